"""ops/tensor.py: shape ops, slicing, joining, padding, depth/space rearrangements, sorting."""

import numpy as np
import pytest
from _mil import IOS16, IOS17, assert_close, check_exact, convert, mb, mil_value, program, rand, run_model, run_op, same

from workbench.coreml_interp.registry import kernel

X = rand(2, 3, 4, 5)


@pytest.mark.parametrize("shape, expected", [
    # MIL: a 0 copies the input's dim at that position, so a shape with a 0 keeps the input's rank
    ([6, -1], (6, 20)), ([0, 3, 2, -1], (2, 3, 2, 10)), ([0, 0, 20, -1], (2, 3, 20, 1)), ([-1], (120,)),
    ([2, 3, 2, 2, 5], None),
], ids=["minus-one", "zero-and-minus-one", "zeros", "flat", "split-axis"])
def test_reshape_zero_copies_the_input_dim(shape, expected):
    out = check_exact("reshape", lambda x: mb.reshape(x=x, shape=shape), X,
                 expected=X.reshape([X.shape[i] if d == 0 else d for i, d in enumerate(shape)]))
    if expected is not None:
        assert out.shape == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("x_shape, shape, expected", [
    # iOS17: each 0 copies the input dim at the same place counted from the right, and is 1 past the input's rank
    ((2, 50), [1, 0, -1, 0], (1, 1, 2, 50)),  # coremltools' docstring example
    ((2, 3, 4), [-1, 0], (6, 4)), ((2, 3, 4), [0, 0, -1, 0], (1, 2, 3, 4)), ((2, 3, 4), [0, -1, 0], (2, 3, 4)),
], ids=["docstring", "shorter", "longer", "same-rank"])
def test_reshape_ios17_zeros_count_from_the_right(x_shape, shape, expected, dtype):
    x = rand(*x_shape).astype(dtype)
    out = check_exact("reshape", lambda x: mb.reshape(x=x, shape=shape), x, expected=x.reshape(expected),
                      opset=IOS17)
    assert out.shape == expected and out.dtype == dtype


@pytest.mark.parametrize("axes", [[0], [-1], [1, 3], [0, -1]])
def test_expand_dims(axes):
    check_exact("expand_dims", lambda x: mb.expand_dims(x=x, axes=axes), rand(3, 4))


@pytest.mark.parametrize("axes", [[1], [-1], [1, 3], None])
def test_squeeze(axes):
    x = rand(2, 1, 3, 1)
    kwargs = {} if axes is None else {"axes": axes}
    expected = np.squeeze(x, None if axes is None else tuple(axes))
    check_exact("squeeze", lambda x: mb.squeeze(x=x, **kwargs), x, expected=expected)


@pytest.mark.parametrize("perm", [[0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 2, 3]])
def test_transpose(perm):
    check_exact("transpose", lambda x: mb.transpose(x=x, perm=perm), X, expected=X.transpose(perm))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_flatten2d(axis):
    a = axis % 4
    expected = X.reshape(int(np.prod(X.shape[:a], dtype=np.int64)), -1)
    if a == 0:  # coremltools 9's value_inference fails at axis 0 (a float np.prod of no dims)
        same(run_op("flatten2d", lambda x: mb.flatten2d(x=x, axis=axis), X), expected)
    else:
        check_exact("flatten2d", lambda x: mb.flatten2d(x=x, axis=axis), X, expected=expected)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    a, b = rand(2, 3, 4), rand(2, 3, 4, seed=1)
    if axis == 1:
        b = rand(2, 5, 4, seed=1)
    check_exact("concat", lambda a, b: mb.concat(values=[a, b], axis=axis), a, b, expected=np.concatenate([a, b], axis))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_interleave(axis):
    a, b, c = rand(2, 3, 4), rand(2, 3, 4, seed=1), rand(2, 3, 4, seed=2)
    # interleave: slices of the inputs alternate along the axis (a0, b0, c0, a1, b1, c1, ...)
    expected = np.stack([a, b, c], axis % 3 + 1).reshape(
        [a.shape[d] * 3 if d == axis % 3 else a.shape[d] for d in range(3)])
    # (not against value_inference: coremltools 9's concat value_inference ignores interleave)
    out = run_op("concat", lambda a, b, c: mb.concat(values=[a, b, c], axis=axis, interleave=True), a, b, c)
    same(out, expected)
    same(np.take(out, [3], axis % 3), np.take(a, [1], axis % 3), "the 4th slice is a's 2nd")


def test_concat_interleave_docstring_example():
    in1, in2 = np.array([[1, 2], [3, 4], [5, 6]], np.float32), np.array([[7, 8], [9, 10], [11, 12]], np.float32)
    out = run_op("concat", lambda a, b: mb.concat(values=[a, b], axis=0, interleave=True), in1, in2)
    same(out, [[1, 2], [7, 8], [3, 4], [9, 10], [5, 6], [11, 12]])


def test_concat_of_a_runtime_tensor_and_a_constant():
    a, c = rand(2, 3), rand(2, 2, seed=1)
    out = run_op("concat", lambda a: mb.concat(values=[a, c], axis=1), a)
    same(out, np.concatenate([a, c], 1))


@pytest.mark.parametrize("axis", [0, 2, -1])
def test_stack(axis):
    a, b = rand(3, 4), rand(3, 4, seed=1)
    check_exact("stack", lambda a, b: mb.stack(values=[a, b], axis=axis), a, b, expected=np.stack([a, b], axis))


@pytest.mark.parametrize("kwargs, sections", [
    ({"num_splits": 2, "axis": 0}, 2), ({"split_sizes": [1, 3, 1], "axis": -1}, [1, 4]),
    ({"split_sizes": [2, 1], "axis": 1}, [2]), ({"num_splits": 4, "axis": 2}, 4),
], ids=["num-splits", "sizes-last-axis", "sizes-axis-1", "num-splits-axis-2"])
def test_split(kwargs, sections):
    x = rand(2, 3, 4, 5)
    out = check_exact("split", lambda x: mb.split(x=x, **kwargs), x)
    for a, b in zip(out, np.split(x, sections, kwargs["axis"])):
        same(a, b, f"split {kwargs}")


@pytest.mark.parametrize("reps", [[1, 2, 1, 3], [2, 1, 1, 1]])
def test_tile(reps):
    check_exact("tile", lambda x: mb.tile(x=x, reps=reps), X, expected=np.tile(X, reps))


@pytest.mark.parametrize("axes", [[0], [-1], [1, 2], None])
def test_reverse(axes):
    kwargs = {} if axes is None else {"axes": axes}
    expected = np.flip(X, None if axes is None else tuple(axes))
    check_exact("reverse", lambda x: mb.reverse(x=x, **kwargs), X, expected=expected)


# slice_by_index: (begin, end, stride, begin_mask, end_mask, squeeze_mask, the numpy index)
SLICES = {
    "plain": ([0, 1, 1, 0], [2, 3, 4, 5], None, None, None, None, np.s_[0:2, 1:3, 1:4, 0:5]),
    "strided": ([0, 0, 0, 1], [2, 3, 4, 5], [1, 2, 3, 2], None, None, None, np.s_[:, 0:3:2, 0:4:3, 1:5:2]),
    "negative-begin-end": ([0, -2, 0, -4], [2, 3, -1, -1], None, None, None, None, np.s_[:, -2:3, 0:-1, -4:-1]),
    "masks": ([1, 2, 3, 4], [1, 1, 1, 1], None, [True, False, True, False], [True, True, False, True],
              None, np.s_[:, 2:, :1, 4:]),
    "negative-stride": ([1, 2, 3, 4], [0, 0, 0, 0], [-1, -1, -2, -3], [False, False, False, False],
                        [True, True, True, True], None, np.s_[1::-1, 2::-1, 3::-2, 4::-3]),
    "negative-stride-bounds": ([0, 2, -1, 3], [0, 0, 0, 0], [1, -1, -1, -2], [True, False, False, False],
                               [True, False, False, False], None, np.s_[:, 2:0:-1, -1:0:-1, 3:0:-2]),
    "squeeze": ([1, 0, 2, 0], [2, 3, 3, 5], None, None, None, [True, False, True, False], np.s_[1, 0:3, 2, 0:5]),
}


def _slice_kwargs(begin, end, stride, begin_mask, end_mask, squeeze_mask) -> dict:
    given = {"stride": stride, "begin_mask": begin_mask, "end_mask": end_mask, "squeeze_mask": squeeze_mask}
    return {"begin": begin, "end": end, **{k: v for k, v in given.items() if v is not None}}


@pytest.mark.parametrize("case", list(SLICES))
def test_slice_by_index(case):
    begin, end, stride, begin_mask, end_mask, squeeze_mask, index = SLICES[case]
    kwargs = _slice_kwargs(begin, end, stride, begin_mask, end_mask, squeeze_mask)
    check_exact("slice_by_index", lambda x: mb.slice_by_index(x=x, **kwargs), X, expected=X[index])


@pytest.mark.parametrize("begin, size, index", [
    ([0, 1, 0, 2], [2, 2, 4, 3], np.s_[0:2, 1:3, 0:4, 2:5]),
    ([1, 0, -3, 0], [1, -1, 2, -1], np.s_[1:2, 0:, -3:-1, 0:]),
])
def test_slice_by_size(begin, size, index):
    check_exact("slice_by_size", lambda x: mb.slice_by_size(x=x, begin=begin, size=size), X, expected=X[index])


@pytest.mark.parametrize("pad", [[1, 2, 0, 3], [0, 0, 0, 0, 2, 1, 1, 3], [1, 1]], ids=["last-two", "all-axes", "last"])
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_modes(mode, pad):
    n = len(pad) // 2
    widths = [(0, 0)] * (4 - n) + [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    kwargs = {"constant_val": 1.5} if mode == "constant" else {}
    if mode == "constant":
        expected = np.pad(X, widths, constant_values=1.5)
    else:
        expected = np.pad(X, widths, mode={"reflect": "reflect", "replicate": "edge"}[mode])
    out = run_op("pad", lambda x: mb.pad(x=x, pad=np.array(pad, np.int32), mode=mode, **kwargs), X)
    same(out, expected, f"pad {mode} {pad}")


def test_pad_reflect_rank3_three_axes():
    x = rand(3, 4, 5)
    out = run_op("pad", lambda x: mb.pad(x=x, pad=np.array([1, 0, 2, 1, 0, 3], np.int32), mode="reflect"), x)
    same(out, np.pad(x, [(1, 0), (2, 1), (0, 3)], mode="reflect"))


def test_depth_to_space_is_dcr():
    # TF's DepthToSpace: out[n, c, h*b + i, w*b + j] = x[n, (i*b + j) * C_out + c, h, w]
    x, b = rand(1, 8, 2, 3), 2
    expected = x.reshape(1, b, b, 2, 2, 3).transpose(0, 3, 4, 1, 5, 2).reshape(1, 2, 4, 6)
    out = run_op("depth_to_space", lambda x: mb.depth_to_space(x=x, block_size=b), x)
    same(out, expected)
    assert out[0, 1, 1, 0] == x[0, (1 * b + 0) * 2 + 1, 0, 0]


def test_space_to_depth_inverts_depth_to_space():
    x, b = rand(1, 2, 4, 6), 2
    expected = x.reshape(1, 2, 2, b, 3, b).transpose(0, 3, 5, 1, 2, 4).reshape(1, 8, 2, 3)
    out = run_op("space_to_depth", lambda x: mb.space_to_depth(x=x, block_size=b), x)
    same(out, expected)
    back = run_op("depth_to_space", lambda x: mb.depth_to_space(x=mb.space_to_depth(x=x, block_size=b),
                                                                 block_size=b), x)
    same(back, x)


def test_pixel_shuffle_is_crd():
    # PyTorch's PixelShuffle: out[n, c, h*f + i, w*f + j] = x[n, c*f*f + i*f + j, h, w]
    x, f = rand(1, 8, 2, 3), 2
    out = run_op("pixel_shuffle", lambda x: mb.pixel_shuffle(x=x, upscale_factor=f), x)
    same(out, x.reshape(1, 2, f, f, 2, 3).transpose(0, 1, 4, 2, 5, 3).reshape(1, 2, 4, 6))


def test_pixel_unshuffle_inverts_pixel_shuffle():
    x, f = rand(1, 2, 4, 6), 2
    out = run_op("pixel_unshuffle", lambda x: mb.pixel_unshuffle(x=x, downscale_factor=np.uint32(f)), x, opset=IOS16)
    same(out, x.reshape(1, 2, 2, f, 3, f).transpose(0, 1, 3, 5, 2, 4).reshape(1, 8, 2, 3))


def test_select_broadcasts():
    cond, a, b = rand(3, 1), rand(3, 4, seed=1), rand(4, seed=2)
    out = run_op("select", lambda c, a, b: mb.select(cond=mb.greater(x=c, y=0.0), a=a, b=b), cond, a, b)
    same(out, np.where(cond > 0, a, b))


@pytest.mark.parametrize("exclusive", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("axis", [0, -1])
def test_cumsum(axis, exclusive, reverse):
    x = rand(3, 4)
    build = lambda x: mb.cumsum(x=x, axis=axis, exclusive=exclusive, reverse=reverse)  # noqa: E731
    y = np.flip(x, axis) if reverse else x
    expected = np.cumsum(y, axis) - (y if exclusive else 0)
    expected = np.flip(expected, axis) if reverse else expected
    out = run_op("cumsum", build, x)
    assert_close(out, expected, 1e-6, 1e-6, f"cumsum axis {axis} exclusive {exclusive} reverse {reverse}")
    if not exclusive:  # coremltools 9's value_inference raises for exclusive=True
        assert_close(out, mil_value(build, x), 1e-6, 1e-6)


@pytest.mark.parametrize("ascending", [False, True])
@pytest.mark.parametrize("axis", [0, -1])
def test_topk(axis, ascending):
    x = rand(4, 6)
    values, indices = run_op("topk", lambda x: mb.topk(x=x, k=3, axis=axis, ascending=ascending), x)
    order = np.argsort(x if ascending else -x, axis, kind="stable")
    index = np.take(order, np.arange(3), axis)
    same(indices, index)
    same(values, np.take_along_axis(x, index, axis))
    assert indices.dtype == np.int32


@pytest.mark.parametrize("ascending", [False, True])
def test_argsort(ascending):
    x = rand(3, 5)
    out = run_op("argsort", lambda x: mb.argsort(x=x, axis=-1, ascending=ascending), x)
    same(out, np.argsort(x if ascending else -x, -1, kind="stable"))


def test_fill_and_range_with_runtime_sizes():
    # runtime shapes keep these ops from being folded into constants
    out = run_op("fill", lambda s: mb.fill(shape=s, value=2.5), np.array([4, 2], np.int32), opset=IOS17)
    same(out, np.full((4, 2), 2.5, np.float32))
    n = np.array([4], np.int32)
    out = run_op("range_1d", lambda n: mb.range_1d(start=1, end=mb.squeeze(x=n), step=1), n * 3, opset=IOS17)
    same(out, np.arange(1, 12))


@pytest.mark.parametrize("start, end, step", [(10, None, -1), (None, -2, -2), (0, None, -1), (None, 9, -1),
                                              (None, 0.5, -1.5), (-3.0, None, -0.5)],
                         ids=["down-to-n", "from-n-down", "empty-up", "empty-down", "fp32-down", "fp32-empty"])
def test_range_1d_with_a_negative_step(start, end, step):
    # MIL: numpy's arange ("a numpy-like 1-D range"); bounds on the wrong side of the step give an empty
    # sequence (torch.arange raises "upper bound and lower bound inconsistent with step sign")
    n = np.array([4.5 if isinstance(step, float) else 4], np.float32 if isinstance(step, float) else np.int32)
    value = n.item()
    build = lambda n: mb.range_1d(start=mb.squeeze(x=n) if start is None else start,  # noqa: E731
                                  end=mb.squeeze(x=n) if end is None else end, step=step)
    out = run_op("range_1d", build, n, opset=IOS17)
    expected = np.arange(value if start is None else start, value if end is None else end, step)
    same(out, expected.astype(out.dtype))
    assert out.size == expected.size
    same(out, mil_value(build, n, opset=IOS17).astype(out.dtype), "against value_inference")


def test_identity_and_shape():
    same(run_op("identity", lambda x: mb.identity(x=x), X), X)
    # a static shape is folded to a constant at conversion: call the kernel on a tensor instead
    same(kernel("shape")(x=__import__("torch").zeros(2, 3, 4)).numpy(), np.array([2, 3, 4], np.int32))


@pytest.mark.parametrize("value", [2.5, 0.0])
def test_fill_like(value):
    x = rand(2, 3)
    out = run_op("fill_like", lambda x: mb.fill_like(ref_tensor=x, value=value), x)
    same(out, np.full((2, 3), value, np.float32))


@pytest.mark.parametrize("lower, upper", [(0, -1), (-1, 0), (0, 0), (1, 2)])
def test_band_part(lower, upper):
    x = rand(2, 4, 5)
    m, n = np.arange(4)[:, None], np.arange(5)[None]
    keep = ((lower < 0) | (m - n <= lower)) & ((upper < 0) | (n - m <= upper))
    check_exact("band_part", lambda x: mb.band_part(x=x, lower=lower, upper=upper), x, expected=np.where(keep, x, 0))


@pytest.mark.parametrize("declared", ["iOS13", "iOS14"])
def test_band_part_in_a_program_declaring_an_opset_before_ios15(declared):
    # coremltools registers band_part (like every op of its iOS15 folder but affine and resample) from iOS13,
    # and a MIL program built at iOS13/14 keeps that opset through ct.convert to an iOS15 ML program, which
    # Core ML runs: the interpreter must not refuse it as "newer than the program's opset"
    import coremltools as ct

    opset = getattr(ct.target, declared)
    x = rand(2, 4, 5)
    build = lambda x: mb.band_part(x=x, lower=1, upper=0)  # noqa: E731
    model = convert(program(build, x, opset=opset), opset=ct.target.iOS15)
    assert model._mil_program.functions["main"].opset_version == opset
    m, n = np.arange(4)[:, None], np.arange(5)[None]
    same(run_model(model, "band_part", x), np.where((m - n <= 1) & (n - m <= 0), x, 0))


def test_non_zero():
    x = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]], np.float32)
    out = run_op("non_zero", lambda x: mb.non_zero(x=x), x)
    same(out, np.argwhere(x != 0))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    indices = np.array([[0, 2], [3, 1]], np.int32)
    out = run_op("one_hot", lambda i: mb.one_hot(indices=i, one_hot_vector_size=4, axis=axis, on_value=5.0,
                                                 off_value=-1.0), indices)
    expected = np.moveaxis(np.where(np.eye(4, dtype=bool)[indices], 5.0, -1.0), -1, axis)
    same(out, expected)


def test_reshape_like():
    x, a, b = rand(2, 3, 4, 5), rand(2, 3, 4, seed=1), rand(1, 20, 6, seed=2)
    out = run_op("reshape_like", lambda x, a, b: mb.reshape_like(x=x, ref_tensors=(a, b), begins=(0, 1), ends=(2, 2),
                                                                 end_masks=(False, False)), x, a, b, opset=IOS16)
    same(out, x.reshape(2, 3, 20))


@pytest.mark.parametrize("case", ["plain", "strided", "negative-stride", "squeeze"])
def test_slice_update(case):
    import coremltools as ct

    begin, end, stride, begin_mask, end_mask, squeeze_mask, index = SLICES[case]
    kwargs = _slice_kwargs(begin, end, stride, begin_mask, end_mask, squeeze_mask)
    update = rand(*X[index].shape, seed=5)
    expected = X.copy()
    expected[index] = update
    out = run_op("slice_update", lambda x, u: mb.slice_update(x=x, update=u, **kwargs), X, update,
                 opset=ct.target.iOS18)
    same(out, expected)


def _np_space_to_batch(x, bh, bw, pads):
    x = np.pad(x, [(0, 0), (0, 0), tuple(pads[0]), tuple(pads[1])])
    n, c, h, w = x.shape
    out = np.empty((bh * bw * n, c, h // bh, w // bw), x.dtype)
    for i, j, b in np.ndindex(bh, bw, n):  # TF: batch (i * bw + j) * n + b takes rows i::bh, columns j::bw
        out[(i * bw + j) * n + b] = x[b, :, i::bh, j::bw]
    return out


def test_space_to_batch_and_back():
    x = rand(2, 3, 4, 6)
    pads = [[1, 1], [0, 2]]
    expected = _np_space_to_batch(x, 2, 4, pads)
    out = run_op("space_to_batch", lambda x: mb.space_to_batch(x=x, block_shape=[2, 4], paddings=pads), x)
    same(out, expected)
    back = run_op("batch_to_space", lambda y: mb.batch_to_space(x=y, block_shape=[2, 4], crops=pads), expected)
    same(back, x)


@pytest.mark.parametrize("axis, size, stride", [(1, 3, 1), (-1, 2, 2), (0, 2, 1)])
def test_sliding_windows(axis, size, stride):
    x = rand(4, 6, 5)
    a = axis % 3
    n = (x.shape[a] - size) // stride + 1
    expected = np.stack([np.take(x, range(i * stride, i * stride + size), a) for i in range(n)], a)
    same(run_op("sliding_windows", lambda x: mb.sliding_windows(x=x, axis=axis, size=size, stride=stride), x),
          expected)


@pytest.mark.parametrize("seq_axis, batch_axis", [(1, 0), (0, 1), (2, 0)])
def test_reverse_sequence(seq_axis, batch_axis):
    x = rand(3, 4, 5)
    lengths = np.array([2, 0, 3, 1, 4][:x.shape[batch_axis]], np.int32)
    expected = x.copy()
    for b, n in enumerate(lengths):
        src = np.take(x, b, batch_axis)
        axis = seq_axis - 1 if seq_axis > batch_axis else seq_axis
        part = np.flip(np.take(src, range(n), axis), axis)
        dst = [slice(None)] * 3
        dst[batch_axis] = b
        sub = [slice(None)] * 2
        sub[axis] = slice(0, n)
        view = expected[tuple(dst)]
        view[tuple(sub)] = part
    out = run_op("reverse_sequence", lambda x, l: mb.reverse_sequence(x=x, lengths=l, seq_axis=seq_axis,
                                                                       batch_axis=batch_axis), x, lengths)
    same(out, expected)


def test_non_maximum_suppression_ios15():
    # (x, y, w, h) center-size; box 1 overlaps box 0 heavily, box 3 falls below the score threshold
    boxes = np.array([[[0.5, 0.5, 1.0, 1.0], [0.55, 0.5, 1.0, 1.0], [3.0, 3.0, 1.0, 1.0], [6.0, 6.0, 1.0, 1.0]]],
                     np.float32)
    scores = np.array([[[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.05, 0.01]]], np.float32)
    out = run_op("non_maximum_suppression", lambda b, s: mb.non_maximum_suppression(
        boxes=b, scores=s, iou_threshold=0.5, score_threshold=0.1, max_boxes=3), boxes, scores, opset=IOS16)
    kept_boxes, kept_scores, indices, count = out
    same(indices, [[0, 2, -1]])
    same(count, [2])
    same(kept_boxes[0, :2], boxes[0, [0, 2]])
    same(kept_scores[0, :2], scores[0, [0, 2]])
    same(kept_boxes[0, 2], np.zeros(4))


def test_non_maximum_suppression_ios17_per_class():
    boxes = np.array([[[0.5, 0.55, 3.0], [0.5, 0.5, 3.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]], np.float32)  # (1, 4, 3)
    scores = np.array([[[0.9, 0.1, 0.3], [0.1, 0.8, 0.7]]], np.float32)  # (1, 2 classes, 3 boxes)
    build = lambda b, s, per_class: mb.non_maximum_suppression(  # noqa: E731
        boxes=b, scores=s, iou_threshold=0.5, max_boxes=3, per_class_suppression=per_class)
    _, _, together = run_op("non_maximum_suppression", lambda b, s: build(b, s, False), boxes, scores, opset=IOS17)
    same(together, [[0, 2, -1]])  # box 1 overlaps box 0
    _, _, per_class = run_op("non_maximum_suppression", lambda b, s: build(b, s, True), boxes, scores, opset=IOS17)
    same(per_class, [[0, 1, 2]])  # box 1's best class differs from box 0's: kept
