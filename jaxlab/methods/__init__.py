"""One subpackage per research method; each depends on core, data, nn, train only, never on another method."""
