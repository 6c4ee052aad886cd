"""Research methods, one subpackage each."""
