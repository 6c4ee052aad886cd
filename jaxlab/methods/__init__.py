"""One subpackage per research method; each depends on core, data, nn, train only, never on another method.

The method contract: every method that trains a model exposes, besides ``run(config, workdir)`` (what
``jaxlab run`` calls), three pure functions for users' own loops:

- ``init(key, config) -> jaxlab.train.MethodState``: the state at step 0 (the arrays of a ``TrainState`` and
  the config as static data);
- ``train_step(state, batch, key) -> (state, metrics)``: the step the method's ``run`` trains with; pure, so
  ``jax.jit(train_step)`` compiles once per config (and batch shape); ``metrics`` holds ``loss``;
- ``evaluate(state, data) -> dict``: the metrics ``run`` reports for a split.

Each method's ``train_step`` docstring says what a batch is and which of its functions makes one; its
``_contract`` module says which model of the method the state trains. The methods with the contract:
abtrain, autopq, energy_scaling, fwdgrad, petnet, recycle, transplant, tsprune, weathermixer.
"""
