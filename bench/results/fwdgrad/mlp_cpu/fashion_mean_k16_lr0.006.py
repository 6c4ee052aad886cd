import numpy as np
from jaxlab import data as jdata
from jaxlab.methods.fwdgrad import train_mlp
ds = jdata.load_fashion_mnist()
for method, k, lr in [("mean", 16, 0.006)]:
    accs = [train_mlp(ds, hidden=(128, 128), method=method, k=k, lr=lr, epochs=2, batch_size=64, seed=s,
                      train_subset=12000)["test_accuracy"] for s in range(3)]
    print(method, k, lr, np.mean(accs), np.std(accs), accs, flush=True)
