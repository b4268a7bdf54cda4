"""neuralnetwork/: each layer type built with coremltools' NeuralNetworkBuilder, run by the interpreter from
a saved .mlmodel, and compared with a numpy/torch reference; custom layers are refused naming themselves."""

import coremltools as ct
import numpy as np
import pytest
import torch
from _mil import assert_close, rand
from coremltools.models import datatypes
from coremltools.models.neural_network import NeuralNetworkBuilder

from workbench.coreml_interp import CoreMLInterpreter
from workbench.errors import WorkbenchError

ATOL, RTOL = 1e-5, 1e-5


def run(tmp_path, inputs: dict, build, outputs=("y",)):
    """A network with multiarray inputs {name: array}; build(builder) adds its layers; the outputs."""
    builder = NeuralNetworkBuilder([(n, datatypes.Array(*a.shape)) for n, a in inputs.items()],
                                   [(o, None) for o in outputs], disable_rank5_shape_mapping=True)
    build(builder)
    path = tmp_path / "net.mlmodel"
    ct.utils.save_spec(builder.spec, str(path))
    out = CoreMLInterpreter(path).predict(dict(inputs))
    return out[outputs[0]] if len(outputs) == 1 else [out[o] for o in outputs]


X = rand(2, 3, 4)
POS = rand(2, 3, 4, low=0.2, high=0.9, seed=1)
Y = rand(2, 3, 4, seed=2)

UNARY = {
    "ceil": (np.ceil, X), "floor": (np.floor, X), "sign": (np.sign, X), "round": (np.round, X),
    "exp2": (np.exp2, X), "sin": (np.sin, X), "cos": (np.cos, X), "tan": (np.tan, POS), "asin": (np.arcsin, POS),
    "acos": (np.arccos, POS), "atan": (np.arctan, X), "sinh": (np.sinh, X), "cosh": (np.cosh, X),
    "tanh": (np.tanh, X), "asinh": (np.arcsinh, X), "acosh": (np.arccosh, POS + 1), "atanh": (np.arctanh, POS),
    "erf": (lambda v: torch.erf(torch.from_numpy(v)).numpy(), X),
}


@pytest.mark.parametrize("kind", list(UNARY))
def test_unary_math_layers(kind, tmp_path):
    fn, x = UNARY[kind]
    out = run(tmp_path, {"x": x}, lambda b: getattr(b, f"add_{kind}")("l", "x", "y"))
    assert_close(out, fn(x.astype(np.float64)), 1e-5, 1e-5, kind)


BINARY = {
    "add_mod_broadcastable": lambda a, b: np.mod(a, b), "add_min_broadcastable": np.minimum,
    "add_max_broadcastable": np.maximum, "add_pow_broadcastable": lambda a, b: np.power(np.abs(a) + 0.5, b),
    "add_floor_div_broadcastable": lambda a, b: np.floor(a / b),
}


@pytest.mark.parametrize("method", list(BINARY))
def test_broadcastable_binary_layers(method, tmp_path):
    a, b = (np.abs(X) + 0.5 if "pow" in method else X), rand(3, 1, seed=3) + 3.0
    out = run(tmp_path, {"a": a, "b": b}, lambda bl: getattr(bl, method)("l", ["a", "b"], "y"))
    ref = BINARY[method](X if "pow" not in method else X, b) if "pow" not in method else np.power(a, b)
    assert_close(out, ref, 1e-4, 1e-5, method)


@pytest.mark.parametrize("method, fn", [
    ("add_equal", np.equal), ("add_not_equal", np.not_equal), ("add_less_than", np.less),
    ("add_greater_than", np.greater)])
def test_comparisons_give_ones_and_zeros(method, fn, tmp_path):
    a, b = np.round(X), np.round(Y)
    out = run(tmp_path, {"a": a, "b": b}, lambda bl: getattr(bl, method)("l", ["a", "b"], "y"))
    assert_close(out, fn(a, b).astype(np.float32), 0, 0)
    one = run(tmp_path, {"a": a}, lambda bl: getattr(bl, method)("l", ["a"], "y", alpha=0.0))
    assert_close(one, fn(a, 0.0).astype(np.float32), 0, 0, f"{method} against alpha")


@pytest.mark.parametrize("mode", ["AND", "OR", "XOR", "NOT"])
def test_logical_layers(mode, tmp_path):
    a, b = (X > 0).astype(np.float32), (Y > 0).astype(np.float32)
    names = ["a"] if mode == "NOT" else ["a", "b"]
    feeds = {"a": a} if mode == "NOT" else {"a": a, "b": b}
    out = run(tmp_path, feeds, lambda bl: bl.add_logical("l", names, "y", mode))
    ref = {"AND": np.logical_and(a, b), "OR": np.logical_or(a, b), "XOR": np.logical_xor(a, b),
           "NOT": np.logical_not(a)}[mode]
    assert_close(out, ref.astype(np.float32), 0, 0)


def test_average_dot_and_clamped_relu_and_gelu(tmp_path):
    x, y = rand(1, 3, 2, 2), rand(1, 3, 2, 2, seed=1)
    out = run(tmp_path, {"a": x, "b": y}, lambda b: b.add_elementwise("l", ["a", "b"], "y", "AVE"))
    assert_close(out, (x + y) / 2, ATOL, RTOL, "average")
    out = run(tmp_path, {"a": x, "b": y}, lambda b: b.add_elementwise("l", ["a", "b"], "y", "DOT"))
    assert_close(out, (x * y).sum(-3, keepdims=True), ATOL, RTOL, "dot over the channels")
    out = run(tmp_path, {"a": x, "b": y}, lambda b: b.add_elementwise("l", ["a", "b"], "y", "COS"))
    cos = (x * y).sum(-3, keepdims=True) / (np.linalg.norm(x, axis=-3, keepdims=True) *
                                            np.linalg.norm(y, axis=-3, keepdims=True))
    assert_close(out, cos, ATOL, RTOL, "cosine similarity")
    out = run(tmp_path, {"x": X}, lambda b: b.add_clamped_relu("l", "x", "y", alpha=0.1, beta=1.0))
    assert_close(out, np.where(X >= 0, np.minimum(X, 1.0), np.minimum(0.1 * X, 1.0)), ATOL, RTOL, "clampedReLU")
    out = run(tmp_path, {"x": X}, lambda b: b.add_gelu("l", "x", "y", mode="TANH_APPROXIMATION"))
    assert_close(out, torch.nn.functional.gelu(torch.from_numpy(X), approximate="tanh").numpy(), ATOL, RTOL)


def test_legacy_shape_layers(tmp_path):
    x = rand(1, 2, 3, 4)
    out = run(tmp_path, {"x": x}, lambda b: b.add_reshape("l", "x", "y", (4, 3, 2), 0))
    assert_close(out, x.reshape(1, 4, 3, 2), 0, 0, "reshape CHANNEL_FIRST")
    out = run(tmp_path, {"x": x}, lambda b: b.add_reshape("l", "x", "y", (4, 3, 2), 1))
    assert_close(out, x.transpose(0, 2, 3, 1).reshape(1, 3, 2, 4).transpose(0, 3, 1, 2), 0, 0, "CHANNEL_LAST")
    out = run(tmp_path, {"x": x}, lambda b: b.add_flatten("l", 1, "x", "y"))
    assert_close(out, x.transpose(0, 2, 3, 1).reshape(1, -1, 1, 1), 0, 0, "flatten CHANNEL_LAST")
    out = run(tmp_path, {"x": x}, lambda b: b.add_permute("l", (0, 3, 1, 2), "x", "y"))
    assert_close(out, x.transpose(0, 3, 1, 2), 0, 0, "permute [Seq, C, H, W] -> [Seq, W, C, H]")
    out = run(tmp_path, {"x": rand(1, 4, 2, 2)}, lambda b: b.add_split("l", "x", ["y", "z"]), outputs=("y", "z"))
    assert_close(out[1], rand(1, 4, 2, 2)[:, 2:], 0, 0, "split along C")
    out = run(tmp_path, {"x": x}, lambda b: b.add_crop("l", 1, 0, 0, 1, [], ["x"], "y"))
    assert_close(out, x[..., 0:2, 1:4], 0, 0, "crop left 1, bottom 1")
    small = rand(1, 2, 2, 2, seed=4)
    out = run(tmp_path, {"x": x, "r": small}, lambda b: b.add_crop("l", 0, 0, 0, 0, [1, 2], ["x", "r"], "y"))
    assert_close(out, x[..., 1:3, 2:4], 0, 0, "crop to the second input's size at an offset")
    out = run(tmp_path, {"x": rand(1, 1, 2, 1, 1)}, lambda b: b.add_sequence_repeat("l", 3, "x", "y"))
    assert_close(out, np.tile(rand(1, 1, 2, 1, 1), (3, 1, 1, 1, 1)), 0, 0, "sequenceRepeat")
    out = run(tmp_path, {"x": x}, lambda b: b.add_copy("l", "x", "y"))
    assert_close(out, x, 0, 0, "copy")


def test_nd_shape_layers(tmp_path):
    x = X
    cases = [
        (lambda b: b.add_tile("l", "x", "y", reps=[1, 2, 1]), np.tile(x, (1, 2, 1))),
        (lambda b: b.add_reverse("l", "x", "y", reverse_dim=[True, False, True]), x[::-1, :, ::-1]),
        (lambda b: b.add_split_nd("l", "x", ["y", "z"], axis=2, split_sizes=[1, 3]), x[:, :, :1]),
        (lambda b: b.add_sliding_windows("l", "x", "y", axis=2, window_size=2, step=2),
         np.stack([x[:, :, 0:2], x[:, :, 2:4]], 2)),
        (lambda b: b.add_get_shape("l", "x", "y"), np.array(x.shape, np.float32)),
        (lambda b: b.add_fill_like("l", "x", "y", value=2.5), np.full(x.shape, 2.5)),
        (lambda b: b.add_fill_static("l", "y", output_shape=[2, 2], value=1.5), np.full((2, 2), 1.5)),
        (lambda b: b.add_broadcast_to_static("l", "x", "y", output_shape=[3, 2, 3, 4]),
         np.broadcast_to(x, (3, 2, 3, 4))),
        (lambda b: b.add_rank_preserving_reshape("l", "x", "y", output_shape=[0, 4, -1]), x.reshape(2, 4, 3)),
        (lambda b: b.add_constant_pad("l", ["x"], "y", value=7.0, pad_amounts=[0, 0, 1, 0, 0, 2]),
         np.pad(x, [(0, 0), (1, 0), (0, 2)], constant_values=7.0)),
        (lambda b: b.add_constant_pad("l", ["x"], "y", value=0.0, pad_to_given_output_size_mode=True,
                                      pad_amounts=[0, 0, 0, 5, 6, 0]), np.pad(x, [(0, 0), (0, 2), (2, 0)])),
        (lambda b: b.add_range_static("l", "y", end=5, start=1, step=2), np.arange(1, 5, 2)),
        (lambda b: b.add_matrix_band_part("l", "x", "y", num_lower=1, num_upper=0),
         np.where(np.tril(np.ones((3, 4))) - np.tril(np.ones((3, 4)), -2) > 0, x, 0)),
        (lambda b: b.add_lower_triangular("l", "x", "y", k=1), np.tril(x, 1)),
        (lambda b: b.add_upper_triangular("l", "x", "y", k=-1), np.triu(x, -1)),
        (lambda b: b.add_cumsum("l", ["x"], "y", axis=2, reverse=True, exclusive=True),
         np.flip(np.cumsum(np.flip(x, 2), 2), 2) - x),
        (lambda b: b.add_argsort("l", "x", "y", axis=-1, descending=True), np.argsort(-x, -1, kind="stable")),
        (lambda b: b.add_argmax("l", "x", "y", axis=1, keepdims=False), np.argmax(x, 1)),
        (lambda b: b.add_argmin("l", "x", "y", axis=2, keepdims=True), np.argmin(x, 2)[:, :, None]),
        (lambda b: b.add_where_nonzero("l", "x", "y"), np.argwhere(x > 0.5).astype(np.float32)),
    ]
    for i, (build, expected) in enumerate(cases):
        if i == len(cases) - 1:  # whereNonZero of a mask
            out = run(tmp_path, {"x": (x > 0.5).astype(np.float32)}, build)
        elif "split" in str(build.__code__.co_names):
            out = run(tmp_path, {"x": x}, build, outputs=("y", "z"))[0]
        else:
            out = run(tmp_path, {"x": x}, build)
        assert_close(out, expected, 1e-6, 1e-6, f"case {i}")


def test_gathers_scatters_and_stack(tmp_path):
    x, idx = rand(4, 3), np.array([2, 0], np.float32)
    assert_close(run(tmp_path, {"x": x, "i": idx}, lambda b: b.add_gather("l", ["x", "i"], "y", axis=0)),
                 x[[2, 0]], 0, 0, "gather")
    along = np.array([[0, 1, 3], [2, 2, 0]], np.float32)
    assert_close(run(tmp_path, {"x": x, "i": along}, lambda b: b.add_gather_along_axis("l", ["x", "i"], "y", axis=0)),
                 np.take_along_axis(x, along.astype(int), 0), 0, 0, "gatherAlongAxis")
    nd = np.array([[1, 2], [3, 0]], np.float32)
    assert_close(run(tmp_path, {"x": x, "i": nd}, lambda b: b.add_gather_nd("l", ["x", "i"], "y")),
                 x[[1, 3], [2, 0]], 0, 0, "gatherND")
    upd = rand(2, 3, seed=5)
    out = run(tmp_path, {"x": x, "i": idx, "u": upd}, lambda b: b.add_scatter("l", ["x", "i", "u"], "y", axis=0,
                                                                              mode="ADD"))
    expected = x.copy()
    expected[[2, 0]] += upd
    assert_close(out, expected, 1e-6, 1e-6, "scatter add")
    out = run(tmp_path, {"x": x, "i": along, "u": upd}, lambda b: b.add_scatter_along_axis(
        "l", ["x", "i", "u"], "y", axis=0, mode="UPDATE"))
    expected = x.copy()
    np.put_along_axis(expected, along.astype(int), upd, 0)
    assert_close(out, expected, 0, 0, "scatterAlongAxis")
    out = run(tmp_path, {"x": x, "i": nd, "u": np.array([5.0, 6.0], np.float32)},
              lambda b: b.add_scatter_nd("l", ["x", "i", "u"], "y", mode="UPDATE"))
    expected = x.copy()
    expected[1, 2], expected[3, 0] = 5.0, 6.0
    assert_close(out, expected, 0, 0, "scatterND")
    out = run(tmp_path, {"a": x, "b": x + 1}, lambda b: b.add_stack("l", ["a", "b"], "y", axis=1))
    assert_close(out, np.stack([x, x + 1], 1), 0, 0, "stack")


def test_dynamic_shape_layers(tmp_path):
    x = X
    shape = np.array([4, 6], np.float32)
    assert_close(run(tmp_path, {"x": x, "s": shape}, lambda b: b.add_reshape_dynamic("l", ["x", "s"], "y")),
                 x.reshape(4, 6), 0, 0, "reshapeDynamic")
    like = np.zeros((6, 4), np.float32)
    assert_close(run(tmp_path, {"x": x, "r": like}, lambda b: b.add_reshape_like("l", ["x", "r"], "y")),
                 x.reshape(6, 4), 0, 0, "reshapeLike")
    assert_close(run(tmp_path, {"s": shape}, lambda b: b.add_fill_dynamic("l", "s", "y", value=3.0)),
                 np.full((4, 6), 3.0), 0, 0, "fillDynamic")
    one = rand(1, 4)
    assert_close(run(tmp_path, {"x": one, "r": like}, lambda b: b.add_broadcast_to_like("l", ["x", "r"], "y")),
                 np.broadcast_to(one, (6, 4)), 0, 0, "broadcastToLike")
    assert_close(run(tmp_path, {"x": one, "s": np.array([3, 4], np.float32)},
                     lambda b: b.add_broadcast_to_dynamic("l", ["x", "s"], "y")), np.broadcast_to(one, (3, 4)), 0, 0)
    end = np.array([7.0], np.float32)
    assert_close(run(tmp_path, {"e": end}, lambda b: b.add_range_dynamic("l", ["e"], "y", start=1, step=3)),
                 np.arange(1, 7, 3), 0, 0, "rangeDynamic")
    for first, step, last in [(5, -2, 0.0), (1, -1, 7.0)]:  # counting down; bounds against the step: empty
        out = run(tmp_path, {"e": np.array([last], np.float32)},
                  lambda b, first=first, step=step: b.add_range_dynamic("l", ["e"], "y", start=first, step=step))
        assert_close(out, np.arange(first, last, step), 0, 0, f"rangeDynamic {first}:{last}:{step}")
        assert out.size == np.arange(first, last, step).size
    begin = np.array([1, 0, 2], np.float32)
    out = run(tmp_path, {"x": x, "b": begin}, lambda b: b.add_slice_dynamic("l", ["x", "b"], "y", end_ids=[2, 3, 4],
                                                                            strides=[1, 2, 1]))
    assert_close(out, x[1:2, 0:3:2, 2:4], 0, 0, "sliceDynamic")
    out = run(tmp_path, {"x": x, "b": np.array([1], np.float32)},
              lambda b: b.add_slice_by_size("l", ["x", "b"], "y", axis=2, size=2))
    assert_close(out, x[:, :, 1:3], 0, 0, "sliceBySize")
    cond = (X > 0).astype(np.float32)
    out = run(tmp_path, {"c": cond, "a": X, "b": Y}, lambda b: b.add_where_broadcastable("l", ["c", "a", "b"], "y"))
    assert_close(out, np.where(cond > 0, X, Y), 0, 0, "whereBroadcastable")
    out = run(tmp_path, {"x": x, "l": np.array([2.0, 1.0], np.float32)},
              lambda b: b.add_reverse_sequence("l", ["x", "l"], "y", batch_axis=0, seq_axis=2))
    expected = x.copy()
    expected[0, :, :2] = x[0, :, 1::-1]
    assert_close(out, expected, 0, 0, "reverseSeq")
    out = run(tmp_path, {"i": np.array([2.0, 0.0], np.float32)},
              lambda b: b.add_one_hot("l", ["i"], "y", one_hot_vector_size=3, axis=-1, on_value=1.0, off_value=0.0))
    assert_close(out, np.eye(3)[[2, 0]], 0, 0, "oneHot")
    out = run(tmp_path, {"x": x}, lambda b: b.add_topk("l", ["x"], ["y", "i"], k=2, axis=-1, use_bottom_k=True),
              outputs=("y", "i"))
    assert_close(out[0], np.sort(x, -1)[..., :2], 0, 0, "topK bottom")
    assert_close(out[1], np.argsort(x, -1)[..., :2], 0, 0, "topK indices")


def test_embeddings_and_batched_matmul_and_load_constant(tmp_path):
    w = rand(5, 4)  # (outputChannels, inputDim)
    idx = np.array([3.0, 0.0], np.float32).reshape(2, 1, 1, 1)
    out = run(tmp_path, {"x": idx}, lambda b: b.add_embedding("l", w, np.ones(5, np.float32), 4, 5, True, "x", "y"))
    assert_close(out, (w[:, [3, 0]].T + 1).reshape(2, 5, 1, 1), 0, 0, "embedding")
    out = run(tmp_path, {"x": np.array([[1.0], [2.0]], np.float32)},
              lambda b: b.add_embedding_nd("l", "x", "y", vocab_size=4, embedding_size=5, W=w))
    assert_close(out, w[:, [1, 2]].T, 0, 0, "embeddingND")
    a, m = rand(2, 3, 4), rand(4, 5, seed=1)
    out = run(tmp_path, {"x": a}, lambda b: b.add_batched_mat_mul("l", ["x"], "y", weight_matrix_rows=4,
                                                                   weight_matrix_columns=5, W=m, bias=np.ones(5)))
    assert_close(out, a @ m + 1, 1e-5, 1e-5, "batchedMatmul with weights")
    c = rand(2, 5, 4, seed=2)
    out = run(tmp_path, {"a": a, "c": c}, lambda b: b.add_batched_mat_mul("l", ["a", "c"], "y", transpose_b=True))
    assert_close(out, a @ c.transpose(0, 2, 1), 1e-5, 1e-5, "batchedMatmul of two inputs")
    const = rand(2, 1, 3)
    out = run(tmp_path, {"x": const}, lambda b: (b.add_load_constant("c", "k", const, [2, 1, 3]),
                                                 b.add_elementwise("l", ["x", "k"], "y", "ADD")))
    assert_close(out, 2 * const, 0, 0, "loadConstant")


def test_normalization_and_reduction_layers(tmp_path):
    x = rand(1, 3, 4, 5)
    out = run(tmp_path, {"x": x}, lambda b: b.add_mvn("l", "x", "y", across_channels=False, normalize_variance=True,
                                                      epsilon=1e-5))
    mean, var = x.mean((-2, -1), keepdims=True), x.var((-2, -1), keepdims=True)
    assert_close(out, (x - mean) / np.sqrt(var + 1e-5), 1e-5, 1e-5, "mvn per channel")
    out = run(tmp_path, {"x": x}, lambda b: b.add_l2_normalize("l", "x", "y", epsilon=1e-6))
    assert_close(out, x / np.sqrt((x ** 2).sum((-3, -2, -1), keepdims=True) + 1e-6), 1e-5, 1e-5, "l2normalize")
    out = run(tmp_path, {"x": x}, lambda b: b.add_lrn("l", "x", "y", alpha=1e-3, beta=0.75, local_size=3, k=2.0))
    ref = torch.nn.functional.local_response_norm(torch.from_numpy(x), 3, 1e-3, 0.75, 2.0).numpy()
    assert_close(out, ref, 1e-5, 1e-5, "lrn")
    gamma, beta = rand(4, 5, seed=3), rand(4, 5, seed=4)
    out = run(tmp_path, {"x": x}, lambda b: b.add_layer_normalization("l", "x", "y", [4, 5], gamma, beta, eps=1e-5))
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x), [4, 5], torch.from_numpy(gamma),
                                         torch.from_numpy(beta), 1e-5).numpy()
    assert_close(out, ref, 1e-5, 1e-5, "layerNormalization")
    for mode, fn in [("sum", np.sum), ("avg", np.mean), ("max", np.max), ("L2", lambda v, axis, keepdims: np.sqrt(
            (v ** 2).sum(axis, keepdims=keepdims)))]:
        out = run(tmp_path, {"x": x}, lambda b, mode=mode: b.add_reduce("l", "x", "y", axis="HW", mode=mode))
        assert_close(out, fn(x, axis=(-2, -1), keepdims=True), 1e-5, 1e-5, f"reduce {mode}")
    pos = np.abs(x) + 0.5
    out = run(tmp_path, {"x": pos}, lambda b: b.add_reduce("l", "x", "y", axis="CHW", mode="logsum", epsilon=1e-3))
    assert_close(out, np.log(pos + 1e-3).sum((-3, -2, -1), keepdims=True), 1e-4, 1e-5, "reduce logsum: sum of logs")
    out = run(tmp_path, {"a": x, "b": x + 1}, lambda b: b.add_elementwise("l", ["a", "b"], "y", "SEQUENCE_CONCAT"))
    assert_close(out, np.concatenate([x, x + 1], 0), 0, 0, "sequence concat")
    out = run(tmp_path, {"x": x}, lambda b: b.add_reduce("l", "x", "y", axis="C", mode="argmax"))
    assert_close(out, np.argmax(x, -3)[:, None], 0, 0, "reduce argmax")
    for method, fn in [("add_reduce_l1", lambda v: np.abs(v).sum(1)), ("add_reduce_prod", lambda v: v.prod(1)),
                       ("add_reduce_logsumexp", lambda v: np.log(np.exp(v).sum(1))),
                       ("add_reduce_sumsquare", lambda v: (v ** 2).sum(1))]:
        out = run(tmp_path, {"x": x}, lambda b, m=method: getattr(b, m)("l", "x", "y", axes=[1], keepdims=False))
        assert_close(out, fn(x.astype(np.float64)), 1e-5, 1e-5, method)


@pytest.mark.parametrize("param_shape", [(1,), (3,), (1, 2, 4), (3, 2, 4)], ids=["one", "C", "1HW", "CHW"])
def test_scale_and_bias_layers_take_every_parameter_shape(param_shape, tmp_path):
    # NeuralNetwork.proto: a scale/bias parameter is [1], [C], [1, H, W] or [C, H, W], broadcast over [C, H, W]
    x = rand(2, 3, 2, 4)
    scale, bias = rand(*param_shape, seed=5), rand(*param_shape, seed=6)
    full = np.ones((3, 1, 1), np.float32) * (scale.reshape(-1, 1, 1) if len(param_shape) == 1 else scale)
    shift = np.ones((3, 1, 1), np.float32) * (bias.reshape(-1, 1, 1) if len(param_shape) == 1 else bias)
    out = run(tmp_path, {"x": x}, lambda b: b.add_scale("l", scale, bias, True, "x", "y", shape_scale=param_shape,
                                                        shape_bias=param_shape))
    assert_close(out, x * full + shift, ATOL, RTOL, f"scale {param_shape}")
    out = run(tmp_path, {"x": x}, lambda b: b.add_bias("l", bias, "x", "y", shape_bias=param_shape))
    assert_close(out, x + shift, ATOL, RTOL, f"bias {param_shape}")


@pytest.mark.parametrize("shape", [(1, 3, 2), (3, 2), (2, 3, 5)], ids=["rank3", "rank2", "rank3-wide"])
def test_layer_norm_converted_to_a_neural_network(shape, tmp_path):
    # coremltools' neural-network backend lowers a rank-2/3 layer_norm over the last axis to a reshape to
    # (..., 1, W) -- (1, 3, 1, 2) here --, mvn over the last two axes, and a scale layer with [1, 1, W] gamma/beta
    from _mil import mb, program

    x = rand(*shape, low=-1, high=3)
    gamma, beta = rand(shape[-1], seed=3), rand(shape[-1], seed=4)
    prog = program(lambda x: mb.layer_norm(x=x, axes=[-1], gamma=gamma, beta=beta, epsilon=1e-5), x,
                   opset=ct.target.iOS14)
    model = ct.convert(prog, convert_to="neuralnetwork")
    layers = [layer.WhichOneof("layer") for layer in model.get_spec().neuralNetwork.layers]
    assert "mvn" in layers and "scale" in layers, layers
    path = tmp_path / "ln.mlmodel"
    model.save(str(path))
    out = next(iter(CoreMLInterpreter(path).predict({"x": x}).values()))
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * gamma + beta
    assert_close(out, expected, 2e-5, 1e-5)


def test_3d_convolution_and_pooling(tmp_path):
    x = rand(1, 2, 4, 5, 5)
    w = rand(3, 2, 2, 3, 3, seed=1)
    out = run(tmp_path, {"x": x}, lambda b: b.add_convolution3d("l", 2, 3, 2, 3, 3, w, np.ones(3), True,
                                                                 padding_mode="same", input_name="x", output_name="y"))
    ref = torch.nn.functional.conv3d(torch.nn.functional.pad(torch.from_numpy(x), [1, 1, 1, 1, 0, 1]),
                                     torch.from_numpy(w), torch.ones(3)).numpy()
    assert_close(out, ref, 1e-4, 1e-5, "conv3d same")
    out = run(tmp_path, {"x": x}, lambda b: b.add_pooling3d("l", "x", "y", "MAX", 2, 2, 2, 2, 2, 2))
    assert_close(out, torch.nn.functional.max_pool3d(torch.from_numpy(x), 2).numpy(), 0, 0, "pooling3d max")
    out = run(tmp_path, {"x": x}, lambda b: b.add_global_pooling3d("l", "x", "y", "AVERAGE"))
    assert_close(out, x.mean((-3, -2, -1), keepdims=True), 1e-6, 1e-6, "globalPooling3d")


def test_crop_resize_and_nms(tmp_path):
    x = rand(1, 1, 2, 5, 5)
    roi = np.array([0, 0, 4, 4], np.float32).reshape(1, 1, 4, 1, 1)
    out = run(tmp_path, {"x": x, "r": roi}, lambda b: b.add_crop_resize("l", ["x", "r"], "y", target_height=3,
                                                                       target_width=3))
    assert_close(out.reshape(2, 3, 3), x[0, 0][:, ::2, ::2], 1e-6, 1e-6, "corners 0..4 at 3 points: every other pixel")
    boxes = np.array([[[0.5, 0.5, 1, 1], [0.55, 0.5, 1, 1], [3, 3, 1, 1]]], np.float32)
    scores = np.array([[[0.9], [0.8], [0.3]]], np.float32)
    out = run(tmp_path, {"b": boxes, "s": scores}, lambda b: b.add_nms("l", ["b", "s"], ["y", "ys", "i", "n"],
                                                                      iou_threshold=0.5, max_boxes=3),
              outputs=("y", "ys", "i", "n"))
    assert_close(out[2], [[0, 2, -1]], 0, 0, "kept indices")
    assert_close(out[3], [2], 0, 0, "count")


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_recurrent_layers(tmp_path):
    s, i, h = 3, 2, 4
    x = rand(s, 1, i, 1, 1)
    rng = np.random.default_rng(0)
    mats = lambda *shape, n=1: [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(n)]  # noqa: E731
    w_x, w_h, bias = mats(h, i, n=1)[0], mats(h, h, n=1)[0], mats(h, n=1)[0]
    out = run(tmp_path, {"x": x}, lambda b: b.add_simple_rnn("l", w_h, w_x, bias, h, i, "TANH", ["x"], ["y", "hn"],
                                                             output_all=True), outputs=("y", "hn"))
    hh, ys = np.zeros(h), []
    for t in range(s):
        hh = np.tanh(w_x @ x[t, 0, :, 0, 0] + w_h @ hh + bias)
        ys.append(hh)
    assert_close(out[0].reshape(s, h), np.stack(ys), 1e-5, 1e-5, "simpleRecurrent")
    gx, gh, gb = mats(h, i, n=3), mats(h, h, n=3), mats(h, n=3)  # [z, r, o]
    out = run(tmp_path, {"x": x}, lambda b: b.add_gru("l", gh, gx, gb, h, i, ["x"], ["y", "hn"],
                                                      inner_activation="SIGMOID", output_all=True), outputs=("y", "hn"))
    hh, ys = np.zeros(h), []
    for t in range(s):
        xt = x[t, 0, :, 0, 0]
        z = _sigmoid(gx[0] @ xt + gh[0] @ hh + gb[0])
        r = _sigmoid(gx[1] @ xt + gh[1] @ hh + gb[1])
        o = np.tanh(gx[2] @ xt + gh[2] @ (r * hh) + gb[2])
        hh = (1 - z) * o + z * hh
        ys.append(hh)
    assert_close(out[0].reshape(s, h), np.stack(ys), 1e-5, 1e-5, "gru")
    lx, lh, lb = mats(h, i, n=4), mats(h, h, n=4), mats(h, n=4)  # [i, f, o, z]
    out = run(tmp_path, {"x": x}, lambda b: b.add_unilstm("l", lh, lx, lb, h, i, ["x"], ["y", "hn", "cn"],
                                                          output_all=True, forget_bias=True),
              outputs=("y", "hn", "cn"))
    hh, cc, ys = np.zeros(h), np.zeros(h), []
    for t in range(s):
        xt = x[t, 0, :, 0, 0]
        g = [lx[k] @ xt + lh[k] @ hh + lb[k] for k in range(4)]
        ig, fg, og, zg = _sigmoid(g[0]), _sigmoid(g[1] + 1.0), _sigmoid(g[2]), np.tanh(g[3])
        cc = fg * cc + ig * zg
        hh = og * np.tanh(cc)
        ys.append(hh)
    assert_close(out[0].reshape(s, h), np.stack(ys), 1e-5, 1e-5, "uniDirectionalLSTM with forget bias")
    assert_close(out[2].reshape(h), cc, 1e-5, 1e-5, "final cell state")
    bx, bh, bb = mats(h, i, n=4), mats(h, h, n=4), mats(h, n=4)
    out = run(tmp_path, {"x": x}, lambda b: b.add_bidirlstm("l", lh, lx, lb, bh, bx, bb, h, i, ["x"],
                                                            ["y", "hf", "cf", "hb", "cb"], output_all=True),
              outputs=("y", "hf", "cf", "hb", "cb"))
    assert out[0].shape[2] == 2 * h
    hh, cc, back = np.zeros(h), np.zeros(h), [None] * s
    for t in reversed(range(s)):
        xt = x[t, 0, :, 0, 0]
        g = [bx[k] @ xt + bh[k] @ hh + bb[k] for k in range(4)]
        cc = _sigmoid(g[1]) * cc + _sigmoid(g[0]) * np.tanh(g[3])
        hh = _sigmoid(g[2]) * np.tanh(cc)
        back[t] = hh
    assert_close(out[0][:, 0, h:, 0, 0], np.stack(back), 1e-5, 1e-5, "biDirectionalLSTM backward half")


def test_random_layers(tmp_path):
    shape = [2000]
    out = run(tmp_path, {"x": np.zeros(1, np.float32)},
              lambda b: (b.add_random_uniform_static("r", "u", output_shape=shape, minval=2.0, maxval=4.0, seed=1),
                         b.add_elementwise("l", ["u"], "y", "ADD", alpha=0.0)))
    assert out.min() >= 2.0 and out.max() < 4.0 and abs(out.mean() - 3.0) < 0.1
    x = np.zeros((40, 50), np.float32)
    out = run(tmp_path, {"x": x}, lambda b: b.add_random_normal_like("l", "x", "y", mean=1.0, stddev=2.0, seed=3))
    assert out.shape == x.shape and abs(out.mean() - 1.0) < 0.15 and abs(out.std() - 2.0) < 0.15
    out = run(tmp_path, {"s": np.array([1000], np.float32)},
              lambda b: b.add_random_bernoulli_dynamic("l", ["s"], "y", prob=0.25, seed=4))
    assert set(np.unique(out)) <= {0.0, 1.0} and abs(out.mean() - 0.25) < 0.06
    probs = np.array([[0.0, 1.0, 0.0]], np.float32)
    out = run(tmp_path, {"p": probs}, lambda b: b.add_categorical_distribution("l", "p", "y", num_samples=5,
                                                                                is_logits=False, seed=2))
    assert_close(out, np.ones((1, 5)), 0, 0, "a certain class")


def test_branch_and_loop_with_break(tmp_path):
    x = rand(3)

    def branch(b):
        b.add_greater_than("c", ["x"], "cond", alpha=100.0)  # false: the else branch runs
        br = b.add_branch("br", "cond")
        then = NeuralNetworkBuilder(nn_spec=br.branch.ifBranch, disable_rank5_shape_mapping=True)
        then.add_activation("t", "RELU", "x", "y")
        other = NeuralNetworkBuilder(nn_spec=br.branch.elseBranch, disable_rank5_shape_mapping=True)
        other.add_activation("e", "LINEAR", "x", "y", params=[2.0, 1.0])

    assert_close(run(tmp_path, {"x": x}, branch), 2 * x + 1, 1e-6, 1e-6, "else branch")

    def loop(b):
        b.add_copy("init", "x", "acc")
        lp = b.add_loop("lp", max_iterations=10)
        body = NeuralNetworkBuilder(nn_spec=lp.loop.bodyNetwork, disable_rank5_shape_mapping=True)
        body.add_elementwise("inc", ["acc"], "acc2", "ADD", alpha=1.0)
        body.add_copy("carry", "acc2", "acc")
        body.add_reduce_max("m", "acc", "mx", reduce_all=True)
        body.add_greater_than("g", ["mx"], "stop", alpha=4.5)
        stop = body.add_branch("br", "stop")
        NeuralNetworkBuilder(nn_spec=stop.branch.ifBranch, disable_rank5_shape_mapping=True).add_loop_break("brk")
        b.add_copy("out", "acc", "y")

    x = np.array([0.0, 1.0, 2.0], np.float32)
    assert_close(run(tmp_path, {"x": x}, loop), x + 3, 0, 0, "three turns, then max > 4.5 breaks")


def test_custom_layer_is_refused_naming_itself(tmp_path):
    from coremltools.proto import NeuralNetwork_pb2

    def build(b):
        params = NeuralNetwork_pb2.CustomLayerParams()
        params.className = "MyFancyLayer"
        b.add_custom("fancy", ["x"], ["y"], custom_proto_spec=params)

    with pytest.raises(WorkbenchError, match=r"layer 'fancy' is a custom layer \(MyFancyLayer\).*custom layers need "
                                             r"the app's own code"):
        run(tmp_path, {"x": X}, build)


def test_mean_image_preprocessing(tmp_path):
    from PIL import Image

    builder = NeuralNetworkBuilder([("image", datatypes.Array(3, 2, 2))], [("y", None)])
    builder.add_activation("l", "LINEAR", "image", "y", params=[1.0, 0.0])
    mean = np.arange(12, dtype=np.float32)
    builder.set_pre_processing_parameters(image_input_names=["image"], is_bgr=False)
    pre = builder.spec.neuralNetwork.preprocessing[0]
    pre.ClearField("scaler")
    pre.meanImage.meanImage.extend(mean.tolist())
    path = tmp_path / "mean.mlmodel"
    ct.utils.save_spec(builder.spec, str(path))
    pixels = np.random.default_rng(0).integers(0, 255, (2, 2, 3)).astype(np.uint8)
    out = CoreMLInterpreter(path).predict({"image": Image.fromarray(pixels)})["y"]
    assert_close(out.reshape(3, 2, 2), pixels.transpose(2, 0, 1) - mean.reshape(3, 2, 2), 1e-5, 0)


@pytest.mark.parametrize("mode, nbits", [("linear", 8), ("linear", 4), ("linear", 2), ("linear_lut", 8),
                                         ("linear_lut", 4), ("linear_lut", 1)])
def test_quantized_weights_match_coremltools_dequantization(mode, nbits, tmp_path):
    """Weights from coremltools' neural-network quantize_weights (packed bits, linear or LUT) against the same
    network with coremltools' own `_dequantize_nn_spec` weights."""
    import copy

    from coremltools.models.neural_network import quantization_utils

    rng = np.random.default_rng(0)
    b = NeuralNetworkBuilder([("x", datatypes.Array(2, 5, 5))], [("y", None)])
    b.add_convolution("c", 2, 3, 3, 3, 1, 1, "valid", 1, rng.standard_normal((3, 3, 2, 3)).astype(np.float32),
                      rng.standard_normal(3), True, input_name="x", output_name="h")
    b.add_inner_product("ip", rng.standard_normal((4, 27)).astype(np.float32), rng.standard_normal(4), 27, 4, True,
                        "h", "y")
    quantized = quantization_utils.quantize_weights(ct.models.MLModel(b.spec, skip_model_load=True), nbits, mode)
    spec = quantized.get_spec() if hasattr(quantized, "get_spec") else quantized
    assert spec.neuralNetwork.layers[0].convolution.weights.HasField("quantization")
    reference = copy.deepcopy(spec)
    quantization_utils._dequantize_nn_spec(reference.neuralNetwork)
    x = rand(1, 2, 5, 5)
    outs = []
    for name, s in (("q", spec), ("ref", reference), ("float", b.spec)):
        path = tmp_path / f"{name}.mlmodel"
        ct.utils.save_spec(s, str(path))
        outs.append(CoreMLInterpreter(path).predict({"x": x.reshape(2, 5, 5)})["y"])
    assert_close(outs[0], outs[1], 1e-4, 1e-5, f"{mode} {nbits} bits against coremltools' dequantization")
    assert not np.allclose(outs[0], outs[2], atol=1e-6, rtol=0), "the weights were not quantized"


def test_classifier_and_regressor_heads(tmp_path):
    x = np.array([0.5, 2.0, -1.0], np.float32)
    b = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("probs", None)], mode="classifier",
                             disable_rank5_shape_mapping=True)
    b.add_softmax_nd("sm", "x", "probs", axis=-1)
    b.set_class_labels(["cat", "dog", "bird"], predicted_feature_name="label", prediction_blob="probs")
    path = tmp_path / "cls.mlmodel"
    ct.utils.save_spec(b.spec, str(path))
    out = CoreMLInterpreter(path).predict({"x": x})
    e = np.exp(x - x.max())
    assert out["label"] == "dog"
    assert_close([out["probs"][c] for c in ("cat", "dog", "bird")], e / e.sum(), 1e-6, 1e-6)
    r = NeuralNetworkBuilder([("x", datatypes.Array(3))], [("score", None)], mode="regressor",
                             disable_rank5_shape_mapping=True)
    r.add_reduce_sum("s", "x", "score", axes=[0], keepdims=True)
    path = tmp_path / "reg.mlmodel"
    ct.utils.save_spec(r.spec, str(path))
    interp = CoreMLInterpreter(path)
    assert interp.kind == "neuralNetworkRegressor"
    assert_close(interp.predict({"x": x})["score"], [x.sum()], 1e-6, 0)


def test_int8_dynamic_quantize_weights(tmp_path):
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, (4, 6)).astype(np.int8)
    x = rand(6)
    out = run(tmp_path, {"x": x}, lambda b: b.add_inner_product(
        "ip", q.tobytes(), None, 6, 4, False, "x", "y", is_quantized_weight=True, quantization_type="linear",
        nbits=8, quant_scale=np.array([0.02]), int_8_dynamic_quantize=True))
    assert_close(out, (q.astype(np.float32) * 0.02) @ x, 1e-5, 1e-5)
