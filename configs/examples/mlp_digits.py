"""MLP (2 x 128, ReLU) on the UCI optical digits shipped with scikit-learn.

Command:  jaxlab run configs/examples/mlp_digits.py            (quick: configs/examples/mlp_digits.py:quick)
Hardware: 1 CPU core is enough.
Runtime:  about 10 s on 2 CPU cores (quick: about 5 s), most of it compilation.
Expected: test accuracy >= 0.95 (typically 0.97); quick >= 0.93.
"""

from jaxlab.methods.classify import ClassifierConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> ClassifierConfig:
    config = ClassifierConfig(dataset="digits", model="mlp", hidden=(128, 128), learning_rate=1e-3,
                              batch_size=64, num_steps=1000, eval_every=250, checkpoint_every=250)
    if arg in (None, "", "default"):
        return config
    if arg == "quick":
        return ClassifierConfig(dataset="digits", model="mlp", hidden=(64,), learning_rate=3e-3,
                                batch_size=64, num_steps=300, eval_every=100, checkpoint_every=100)
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
