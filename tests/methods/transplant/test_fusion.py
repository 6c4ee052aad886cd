"""Neuron Transplantation: the wide model is the ensemble, transplanting keeps exactly w units by the
reference's importance, and the baselines (averaging, OT fusion, weight matching) behave as specified."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import prune
from jaxlab.methods import transplant as nt
from jaxlab.core._groups import Axis, Group
from jaxlab.nn import MLP, VGG, ResNet18, SmallCNN

from ...compile_helpers import compiled_programs
from ...timeseries.zoo_helpers import quick_jit


def random_variables(config, x, kw, seed, shapes=None):
    """Random float32 NumPy variables of ``config`` (no init compilation; NumPy arrays take NumPy's fast paths):
    kernels N(0, 1/fan_in), scales about 1, biases and means N(0, 0.25), variances in [0.5, 1.5]."""
    if shapes is None:
        shapes = jax.eval_shape(lambda k: config.init(k, x, **kw), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        shape = leaf.shape
        if name.endswith("['var']"):
            v = 0.5 + rng.random(shape)
        elif name.endswith("['kernel']"):
            v = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif name.endswith("['scale']"):
            v = 1.0 + 0.3 * rng.normal(size=shape)
        else:
            v = 0.5 * rng.normal(size=shape)
        return v.astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


MODELS = {
    "mlp": (MLP(features=(6, 5, 3)), (4, 7), {}),
    "smallcnn": (SmallCNN(3, features=(3, 4), hidden=5), (4, 9, 9, 1), {}),
    "resnet18": (ResNet18(num_classes=3, num_filters=2, small_inputs=True), (4, 8, 8, 3), {"train": False}),
    "vgg11": (VGG.vgg11(3, width=1 / 32, hidden=(5,)), (3, 32, 32, 2), {"train": False}),
}


def _members(name, k, seed=0):
    config, shape, kw = MODELS[name]
    x = np.random.default_rng(1000 + seed).normal(size=shape).astype(np.float32)
    shapes = jax.eval_shape(lambda key: config.init(key, x, **kw), jax.random.key(0))
    members = [(config, random_variables(config, x, kw, 10 * seed + i, shapes)) for i in range(k)]
    return members, x, kw


def _apply(config, variables, x, kw):
    """One jitted forward pass (one compilation per model instead of one per operation)."""
    return quick_jit(lambda v: config.apply(v, x, **kw))(variables)


def _apply_all(config, members, x, kw):
    """Logits of every member (one compilation: members share one shape; a vmapped conv compiles slower)."""
    f = quick_jit(lambda v: config.apply(v, x, **kw))
    return jnp.stack([f(v) for _, v in members])


@pytest.mark.parametrize("name", ["mlp", "smallcnn", "resnet18"])
def test_wide_model_is_the_ensemble_mean(name):
    members, x, kw = _members(name, 8)
    config = members[0][0]
    logits = _apply_all(config, members, x, kw)
    for k in (2, 3, 8):
        wide_config, wide = nt.concat(members[:k])
        mean = jnp.mean(logits[:k], axis=0)
        np.testing.assert_allclose(_apply(wide_config, wide, x, kw), mean, atol=1e-5, rtol=1e-5)
        assert float(jnp.max(jnp.abs(mean))) > 0.1   # not trivially zero


def test_wide_vgg_with_batchnorm_and_flatten_is_the_ensemble():
    members, x, kw = _members("vgg11", 2)
    wide_config, wide = nt.concat(members)
    mean = jnp.mean(_apply_all(members[0][0], members, x, kw), axis=0)
    np.testing.assert_allclose(_apply(wide_config, wide, x, kw), mean, rtol=1e-5,
                               atol=1e-5 * float(jnp.abs(mean).max()))


def test_concat_layout():
    members, x, kw = _members("smallcnn", 2)
    _, wide = nt.concat(members)
    p0, p1, w = members[0][1]["params"], members[1][1]["params"], wide["params"]
    # first layer stacked, middle block-diagonal with zero cross-talk
    np.testing.assert_array_equal(w["Conv_0"]["kernel"][..., :3], p0["Conv_0"]["kernel"])
    np.testing.assert_array_equal(w["Conv_1"]["kernel"][:, :, 3:, 4:], p1["Conv_1"]["kernel"])
    assert not np.any(w["Conv_1"]["kernel"][:, :, :3, 4:])
    # after the NHWC flatten, pixel (h, w) holds member 0's 4 channels, then member 1's: interleaved rows
    d0, d1, dw = p0["Dense_0"]["kernel"], p1["Dense_0"]["kernel"], w["Dense_0"]["kernel"]
    hw = d0.shape[0] // 4
    view = np.asarray(dw).reshape(hw, 8, 10)
    np.testing.assert_array_equal(view[:, :4, :5], np.asarray(d0).reshape(hw, 4, 5))
    np.testing.assert_array_equal(view[:, 4:, 5:], np.asarray(d1).reshape(hw, 4, 5))
    assert not np.any(view[:, :4, 5:]) and not np.any(view[:, 4:, :5])
    # classifier: rows scaled by 1/2, bias averaged
    np.testing.assert_allclose(w["Dense_1"]["kernel"][5:], p1["Dense_1"]["kernel"] / 2, rtol=1e-6)
    np.testing.assert_allclose(w["Dense_1"]["bias"], (p0["Dense_1"]["bias"] + p1["Dense_1"]["bias"]) / 2, rtol=1e-6)


def test_concat_of_unequal_widths_weights_by_inputs():
    x = np.ones((3, 4), np.float32)
    a, b = MLP(features=(2, 3)), MLP(features=(6, 3))
    va, vb = random_variables(a, x, {}, 1), random_variables(b, x, {}, 2)
    np.testing.assert_allclose(nt.output_weights([(a, va), (b, vb)]), [0.25, 0.75])
    wide_config, wide = nt.concat([(a, va), (b, vb)])
    assert wide_config.features == (8, 3)
    expect = 0.25 * _apply(a, va, x, {}) + 0.75 * _apply(b, vb, x, {})
    np.testing.assert_allclose(_apply(wide_config, wide, x, {}), expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="other dependency groups"):
        deeper = MLP(features=(2, 2, 3))
        nt.concat([(a, va), (deeper, random_variables(deeper, x, {}, 3))])


def importance_reference(members):
    """Loop oracle of torch-pruning's MagnitudeImportance(p=2), mean reduction, on the wide MLP (bias not scored):
    (sum of squares of the unit's incoming column + of its outgoing row) / 2, the classifier's rows scaled by 1/k."""
    k = len(members)
    out = {}
    n_layers = len(members[0][0].features)
    for layer in range(n_layers - 1):
        scores = []
        for _, v in members:
            w_in = np.asarray(v["params"][f"dense_{layer}"]["kernel"], np.float64)
            w_out = np.asarray(v["params"][f"dense_{layer + 1}"]["kernel"], np.float64)
            if layer + 1 == n_layers - 1:
                w_out = w_out / k
            for j in range(w_in.shape[1]):
                scores.append((np.sum(w_in[:, j] ** 2) + np.sum(w_out[j] ** 2)) / 2)
        out[f"dense_{layer}"] = np.array(scores)
    return out


def test_importance_is_torch_pruning_magnitude_on_the_wide_model():
    members, _, _ = _members("mlp", 3)
    imp = nt.importance(members)
    ref = importance_reference(members)
    wide_config, wide = nt.concat(members)
    groups = {g.name: g for g in wide_config.dependency_groups()}
    for name in ref:
        np.testing.assert_allclose(imp[name], ref[name], rtol=1e-10)
        # the wide model holds the classifier rows times 1/3 in float32
        np.testing.assert_allclose(imp[name], prune.group_importance(wide, groups[name]), rtol=1e-6)


# ResNet18's direct route is also checked fast by the equivariance test; its comparison with the wide route is slow
@pytest.mark.parametrize("name,k", [("mlp", 3), ("smallcnn", 3), ("vgg11", 3),
                                    pytest.param("resnet18", 2, marks=pytest.mark.slow)])
def test_direct_transplant_equals_pruning_the_wide_model(name, k):
    members, x, kw = _members(name, k)
    cfg_d, v_d, keep_d = nt.transplant(members, via="direct", return_keep=True)
    cfg_w, v_w, keep_w = nt.transplant(members, via="wide", return_keep=True)
    imp = nt.importance(members)
    assert cfg_d == cfg_w == members[0][0]
    for g in members[0][0].dependency_groups():
        np.testing.assert_array_equal(keep_d[g.name], keep_w[g.name])
        np.testing.assert_array_equal(keep_d[g.name], prune.top_units(imp[g.name], g.size))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), v_d, v_w)
    assert jax.tree.map(jnp.shape, v_d) == jax.tree.map(jnp.shape, members[0][1])
    if name in ("mlp", "smallcnn"):   # the stacked form (vmapped training's) is the same program on stacked leaves
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *[v for _, v in members])
        cfg_s, v_s, keep_s = nt.transplant_stacked(members[0][0], stacked)
        assert cfg_s == cfg_w
        for g in members[0][0].dependency_groups():
            np.testing.assert_array_equal(keep_s[g.name], keep_w[g.name])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), v_s, v_w)


@pytest.mark.parametrize("name", ["mlp", "smallcnn"])
def test_transplant_of_one_member_is_the_identity(name):
    members, _, _ = _members(name, 1)
    config, fused = nt.transplant(members)
    assert config == members[0][0]
    jax.tree.map(np.testing.assert_array_equal, fused, members[0][1])


def test_kept_width_is_exact_for_every_k():
    config = MLP(features=(7, 5, 3))
    x = np.ones((1, 4), np.float32)
    members = [(config, random_variables(config, x, {}, i)) for i in range(8)]
    # the wide route runs in NumPy (no compilation per k); the direct route is checked equal to it above
    fusions = (lambda m: nt.transplant(m, via="wide"), nt.transplant_iterative, nt.transplant_hierarchical)
    for k in range(1, 9):
        for fuse in fusions:
            fused_config, fused = fuse(members[:k])
            assert fused_config.features == (7, 5, 3), k
            assert fused["params"]["dense_0"]["kernel"].shape == (4, 7)
            assert fused["params"]["dense_1"]["kernel"].shape == (7, 5)
    _, _, keep = nt.transplant(members[:3], return_keep=True)   # k = 3: the reference keeps w - 1 here
    assert [len(keep[g]) for g in ("dense_0", "dense_1")] == [7, 5]
    _, small = nt.transplant(members[:3], width={"dense_0": 4})
    assert small["params"]["dense_0"]["kernel"].shape == (4, 4)


def test_identical_copies_keep_the_strongest_units_twice():
    """k copies: every unit appears k times with equal importance; the stable top-w keeps the strongest ones,
    each copy in member order, and drops the weakest (the model is not recovered)."""
    config = MLP(features=(6, 3))
    x = np.ones((1, 4), np.float32)
    v = random_variables(config, x, {}, 0)
    _, _, keep = nt.transplant([(config, v), (config, v)], return_keep=True)
    single = nt.importance([(config, v)])["dense_0"]
    strongest = np.argsort(-single, kind="stable")[:3]
    np.testing.assert_array_equal(keep["dense_0"], np.sort(np.concatenate([strongest, strongest + 6])))


def test_fusion_is_equivariant_under_permuting_a_member():
    for name in ("mlp", "smallcnn", "resnet18"):
        members, x, kw = _members(name, 2)
        config = members[0][0]
        rng = np.random.default_rng(0)
        perms = {g.name: rng.permutation(g.size) for g in config.dependency_groups()}
        shuffled = list(members)
        shuffled[1] = (config, nt.permute(config, members[1][1], perms))
        to_numpy = lambda tree: jax.tree.map(np.asarray, tree)   # NumPy takes: no compilation per array shape
        _, a, keep_a = nt.transplant(members, return_keep=True)
        _, b, keep_b = nt.transplant(shuffled, return_keep=True)
        a, b = to_numpy(a), to_numpy(b)
        # the same units are kept: member 1's kept units, mapped through the permutation, are the same set
        fused_perm = {}
        for g in config.dependency_groups():
            n = g.size
            ka, kb = keep_a[g.name], keep_b[g.name]
            mapped = np.where(kb // n == 1, n + perms[g.name][kb % n], kb)
            np.testing.assert_array_equal(np.sort(mapped), ka)
            fused_perm[g.name] = np.argsort(np.argsort(mapped))   # b's unit order -> a's order
        # and the fused models are the same model up to that reordering of units
        b_in_a_order = nt.permute(config, b, {g: np.argsort(fp) for g, fp in fused_perm.items()})
        jax.tree.map(lambda u, w: np.testing.assert_allclose(u, w, rtol=1e-6, atol=1e-7), b_in_a_order, a)
        both = _apply_all(config, [(config, a), (config, b)], x, kw)
        np.testing.assert_allclose(both[1], both[0], rtol=1e-5, atol=1e-5)


def test_iterative_weighting_counts_every_member_equally():
    config = MLP(features=(6, 3))
    x = np.ones((1, 4), np.float32)
    members = [(config, random_variables(config, x, {}, i)) for i in range(4)]
    biases = np.stack([np.asarray(v["params"]["dense_1"]["bias"]) for _, v in members])
    _, equal = nt.transplant_iterative(members)
    np.testing.assert_allclose(equal["params"]["dense_1"]["bias"], biases.mean(0), rtol=1e-5)
    _, ref = nt.transplant_iterative(members, weighting="reference")
    np.testing.assert_allclose(ref["params"]["dense_1"]["bias"], biases.T @ [1 / 8, 1 / 8, 1 / 4, 1 / 2], rtol=1e-5)
    _, hier = nt.transplant_hierarchical(members)
    np.testing.assert_allclose(hier["params"]["dense_1"]["bias"], biases.mean(0), rtol=1e-5)
    # hierarchical with four members is transplant of the two fused halves
    left, right = nt.transplant(members[:2]), nt.transplant(members[2:])
    _, two_level = nt.transplant([left, right])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), hier, two_level)
    with pytest.raises(ValueError, match="weighting"):
        nt.transplant_iterative(members, weighting="bogus")


# ------------------------------------------------------------------------------------------ baselines


def test_average_is_the_mean():
    members, _, _ = _members("mlp", 3)
    _, avg = nt.average(members)
    expect = jax.tree.map(lambda *a: sum(a) / 3, *[v for _, v in members])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), avg, expect)


def test_average_and_permute_of_device_arrays_compile_nothing():
    """Members held as ``jax.Array`` (as the experiment holds them) are averaged and permuted on the host: nothing
    compiles (eagerly, a product and a sum per leaf and member, and a reshape, a take and a reshape per permuted
    leaf, each compiled per shape), the values are the eager ``jnp`` ones bit for bit (the implementation before),
    and the results are ``jax.Array`` where the members were."""
    members, _, _ = _members("smallcnn", 3)
    device = jax.devices()[1]
    on_device = [(c, jax.device_put(v, device)) for c, v in members]
    with compiled_programs() as compiled:
        _, avg = nt.average(on_device, weights=[0.5, 0.3, 0.2])
    assert compiled == [], compiled
    for got, *xs in zip(jax.tree.leaves(avg), *[jax.tree.leaves(v) for _, v in on_device]):
        want = sum(jnp.asarray(w, x.dtype) * x for w, x in zip([0.5, 0.3, 0.2], xs))   # eagerly, as before
        assert isinstance(got, jax.Array) and got.committed and got.sharding == xs[0].sharding
        np.testing.assert_array_equal(got, want)
    config, variables = on_device[0]
    groups = {g.name: g.size for g in config.dependency_groups()}
    rng = np.random.default_rng(0)
    perms = {name: rng.permutation(size) for name, size in groups.items()}
    with compiled_programs() as compiled:
        permuted = nt.permute(config, variables, perms)
    assert compiled == [], compiled
    host = nt.permute(config, members[0][1], perms)   # the NumPy path: the same takes
    for got, want in zip(jax.tree.leaves(permuted), jax.tree.leaves(host)):
        assert isinstance(got, jax.Array) and got.committed
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["mlp", "smallcnn", "vgg11"])
def test_ot_fusion_of_a_permuted_copy_returns_the_model(name):
    members, x, kw = _members(name, 1)
    config, v = members[0]
    rng = np.random.default_rng(1)
    perms = {g.name: rng.permutation(g.size) for g in config.dependency_groups()}
    copy = nt.permute(config, v, perms)
    both = _apply_all(config, [(config, v), (config, copy)], x, kw)
    np.testing.assert_allclose(both[1], both[0], rtol=1e-4, atol=1e-4)
    for fuse in (nt.ot_fusion, nt.weight_matching):
        _, fused = fuse([(config, v), (config, copy)])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), fused, v)


def test_ot_and_weight_matching_align_a_permuted_resnet_and_ot_fuses_two_into_a_function():
    """The residual streams are aligned from the convolution that feeds them (see _align's docstring)."""
    members, x, kw = _members("resnet18", 2)
    config, v = members[0]
    rng = np.random.default_rng(2)
    perms = {g.name: rng.permutation(g.size) for g in config.dependency_groups()}
    copy = nt.permute(config, v, perms)
    f = quick_jit(lambda w: config.apply(w, x, **kw))
    np.testing.assert_allclose(f(copy), f(v), rtol=1e-4, atol=1e-4)
    for fuse in (nt.ot_fusion, nt.weight_matching):
        _, fused = fuse([(config, v), (config, copy)])
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), fused, v)
    got = nt.ot_perms(config, v, copy)
    for name, perm in perms.items():   # new unit j of the copy is old unit perm[j]: OT inverts it
        np.testing.assert_array_equal(np.asarray(perm)[got[name]], np.arange(len(perm)), err_msg=name)
    _, fused = nt.ot_fusion(members)
    out = np.asarray(f(fused))
    assert out.shape == (x.shape[0], 3) and np.isfinite(out).all()


def test_ot_aligns_a_residual_stream_from_the_convolution_that_feeds_it():
    """Two unrelated ResNets: the stem's stream follows the stem convolution alone (its only kernel with no
    unaligned input), stage 1's stream its shortcut plus block 2's last convolution (block 2's inner group,
    declared first, reads the stem and is aligned before it)."""
    members, _, _ = _members("resnet18", 2)
    config, a = members[0]
    b = members[1][1]
    perms = nt.ot_perms(config, a, b)
    ka, kb = (np.asarray(v["params"]["conv_init"]["kernel"], np.float64).reshape(-1, 2) for v in (a, b))
    best = min(itertools.permutations(range(2)), key=lambda p: ot_cost_reference(ka, kb, p))
    np.testing.assert_array_equal(perms["stem"], best)

    sa = np.concatenate([np.asarray(a["params"]["BasicBlock_2"]["conv_proj"]["kernel"], np.float64).reshape(-1, 4),
                         np.asarray(a["params"]["BasicBlock_2"]["Conv_1"]["kernel"], np.float64).reshape(-1, 4)])
    wb_proj = np.asarray(b["params"]["BasicBlock_2"]["conv_proj"]["kernel"], np.float64)[:, :, perms["stem"], :]
    wb_last = np.asarray(b["params"]["BasicBlock_2"]["Conv_1"]["kernel"], np.float64)
    wb_last = wb_last[:, :, perms["BasicBlock_2/Conv_0"], :]
    sb = np.concatenate([wb_proj.reshape(-1, 4), wb_last.reshape(-1, 4)])
    best = min(itertools.permutations(range(4)), key=lambda p: ot_cost_reference(sa, sb, p))
    np.testing.assert_array_equal(perms["residual_1"], best)


def _no_resize(config, kept):
    raise AssertionError("alignment never resizes")


def test_ot_refuses_a_cycle_with_no_input_from_outside():
    """Two groups whose only incoming kernels read each other: no order can align either."""
    class Ring:
        def dependency_groups(self):
            return (Group("a", 3, (Axis(("params", "k1"), -1), Axis(("params", "k2"), 0)), _no_resize),
                    Group("b", 2, (Axis(("params", "k2"), -1), Axis(("params", "k1"), 0)), _no_resize))

    rng = np.random.default_rng(0)
    v = {"params": {"k1": rng.normal(size=(2, 3)), "k2": rng.normal(size=(3, 2))}}
    with pytest.raises(ValueError, match=r"cycle with no input from outside.*weight_matching"):
        nt.ot_perms(Ring(), v, v)
    class Sink:   # group "a" only spans the inputs of k2: nothing writes its units
        def dependency_groups(self):
            return (Group("a", 3, (Axis(("params", "k2"), 0),), _no_resize),)

    with pytest.raises(ValueError, match="'a' has no incoming kernel"):
        nt.ot_perms(Sink(), v, v)
    # weight matching has no order: it aligns the ring
    copy = nt.permute(Ring(), v, {"a": [2, 0, 1], "b": [1, 0]})
    _, fused = nt.weight_matching([(Ring(), v), (Ring(), copy)])
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12), fused, v)


def ot_cost_reference(w_anchor, w_other, perm):
    """Transport cost of assigning anchor unit i to other unit perm[i]: sum of Euclidean distances of incoming rows."""
    return sum(np.linalg.norm(w_anchor[:, i] - w_other[:, j]) for i, j in enumerate(perm))


def test_ot_alignment_is_the_exact_optimum():
    """Brute force over all permutations (the vertices of the transport polytope for uniform marginals)."""
    config = MLP(features=(5, 4, 2), use_bias=False)
    x = np.ones((1, 3), np.float32)
    a, b = random_variables(config, x, {}, 0), random_variables(config, x, {}, 1)
    perms = nt.ot_perms(config, a, b)
    ka, kb = (np.asarray(v["params"]["dense_0"]["kernel"], np.float64) for v in (a, b))
    best = min(itertools.permutations(range(5)), key=lambda p: ot_cost_reference(ka, kb, p))
    np.testing.assert_array_equal(perms["dense_0"], best)
    # second layer: its inputs aligned by the first permutation, then the optimum again
    la = np.asarray(a["params"]["dense_1"]["kernel"], np.float64)
    lb = np.asarray(b["params"]["dense_1"]["kernel"], np.float64)[np.asarray(best)]
    best1 = min(itertools.permutations(range(4)), key=lambda p: ot_cost_reference(la, lb, p))
    np.testing.assert_array_equal(perms["dense_1"], best1)


def weight_matching_objective(config, a, b, perms):
    """sum over parameters of <a, permuted b>: what weight matching ascends."""
    pb = nt.permute(config, b, perms)
    return sum(float(jnp.vdot(u, w)) for u, w in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(pb["params"])))


def test_weight_matching_improves_its_objective_to_a_coordinate_optimum():
    config = MLP(features=(5, 4, 2))
    x = np.ones((1, 3), np.float32)
    a, b = random_variables(config, x, {}, 0), random_variables(config, x, {}, 1)
    perms = nt.weight_matching_perms(config, a, b)
    start = weight_matching_objective(config, a, b, {"dense_0": np.arange(5), "dense_1": np.arange(4)})
    best = weight_matching_objective(config, a, b, perms)
    assert best >= start
    # no single group's permutation can improve it (a coordinate-wise optimum, checked by brute force)
    for name, n in (("dense_0", 5), ("dense_1", 4)):
        for p in itertools.permutations(range(n)):
            assert weight_matching_objective(config, a, b, {**perms, name: np.array(p)}) <= best + 1e-9


def test_errors_name_the_problem():
    members, _, _ = _members("mlp", 2)
    with pytest.raises(ValueError, match="at least one member"):
        nt.concat([])
    with pytest.raises(TypeError, match="pair"):
        nt.concat([members[0][1]])
    with pytest.raises(ValueError, match="permutation of range"):
        nt.permute(members[0][0], members[0][1], {"dense_0": [0, 0, 1, 2, 3, 4]})
    with pytest.raises(ValueError, match="width"):
        nt.transplant(members, width={"dense_0": 13})
    with pytest.raises(ValueError, match="via"):
        nt.transplant(members, via="fast")
