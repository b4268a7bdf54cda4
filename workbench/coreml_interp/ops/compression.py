"""Compressed weights (ops/defs/iOS16/constexpr_ops.py, iOS18/compression.py): the `constexpr_*` ops.

Every input of a constexpr op is a constant, so the program compiler runs these kernels once, when the
model is loaded, and keeps the decompressed weight as a constant: a run never sees them. The same names
have two signatures: iOS16 packs indices and masks into bytes and takes the output `shape`; iOS18 gives
unpacked tensors of the output's rank and adds blocks (a scale or LUT per block of the output) and
vector palettization. The kernels tell them apart by their arguments.

Decompression is computed in float32 numpy, block parameters broadcast over a blocked view of the weight
rather than repeated to its size (fp16 outputs are then rounded to fp16 by the compiler, as the weights
they stand for are stored in fp16).
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import WorkbenchError
from ..registry import op
from ._util import ints, scalar


def _np(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    return np.asarray(value)


def _out(arr: np.ndarray):
    """A decompressed constant as the kernels take constants: floats as float32 tensors, integers as numpy."""
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return np.ascontiguousarray(arr)


def _unpack_bits(packed, nbits: int, count: int) -> np.ndarray:
    """iOS16 packing: elements of `nbits` bits, least significant bit first, one byte after the other.
    (Built bit plane by bit plane into uint16 codes: a large weight never becomes an int64 bit matrix.)"""
    raw = _np(packed).astype(np.uint8).reshape(-1)
    if nbits == 8:
        return raw[:count]
    bits = np.unpackbits(raw, bitorder="little")[:count * nbits].reshape(count, nbits)
    codes = np.zeros(count, np.uint16)
    for b in range(nbits):
        codes |= bits[:, b].astype(np.uint16) << b
    return codes


def _blockwise(data: np.ndarray, param: np.ndarray, fn) -> np.ndarray:
    """fn(data, param) where `param` has one value per block of `data` (block i -> elements i*b .. (i+1)*b-1
    on each axis), by broadcasting over a blocked view rather than repeating `param` to data's size."""
    view, pshape = [], []
    for axis, (n, m) in enumerate(zip(data.shape, param.shape)):
        if n % m:
            raise WorkbenchError(f"a block-wise parameter of shape {param.shape} does not divide the weight shape "
                                 f"{data.shape} at axis {axis}; the model is malformed, re-export it")
        view += [m, n // m]
        pshape += [m, 1]
    return fn(data.reshape(view), param.reshape(pshape)).reshape(data.shape)


def _per_axis(param: np.ndarray, rank: int, axis) -> np.ndarray:
    """iOS16/17 scale or zero point (scalar or vector along `axis`) shaped to broadcast against rank `rank`."""
    if param.ndim == rank:
        return param
    if param.ndim == 0:
        return param.reshape([1] * rank)
    a = int(scalar(axis)) % rank
    return param.reshape([-1 if i == a else 1 for i in range(rank)])


@op("constexpr_affine_dequantize", since=16)
def constexpr_affine_dequantize(quantized_data, zero_point, scale, axis):
    """scale * (quantized_data - zero_point), scale and zero point per tensor or per `axis`."""
    data = _np(quantized_data).astype(np.float64)
    rank = data.ndim
    zp = _per_axis(_np(zero_point).astype(np.float64), rank, axis)
    return _out((data - zp) * _per_axis(_np(scale).astype(np.float64), rank, axis))


@op("constexpr_cast", since=16)
def constexpr_cast(source_val, output_dtype="fp32"):
    if scalar(output_dtype) not in ("fp32", "fp16"):
        raise WorkbenchError(f"constexpr_cast to {scalar(output_dtype)!r}: MIL casts fp16 to fp32 only")
    return _out(_np(source_val).astype(np.float32))


def _lut_to_dense(indices: np.ndarray, lut: np.ndarray, vector_axis) -> np.ndarray:
    """iOS18: lut has shape [*blocks, palettes, vector]; each output block reads its own table, and a
    vector lut writes `vector` consecutive elements along `vector_axis` per index."""
    palettes, vector = lut.shape[-2:]
    rank = indices.ndim
    block = np.zeros((1,) * rank, dtype=np.int64)  # each element's table, in the lut's row-major order
    for axis, (n, m) in enumerate(zip(indices.shape, lut.shape[:rank])):
        if n % m:
            raise WorkbenchError(f"a LUT of shape {lut.shape} does not divide the indices' shape {indices.shape} "
                                 f"at axis {axis}; the model is malformed, re-export it")
        if m == 1:  # one table along this axis: nothing to add (and no full-size array to build)
            continue
        ids = (np.arange(n) // (n // m)).reshape([-1 if i == axis else 1 for i in range(rank)])
        block = block * m + ids
    flat = block * palettes + indices.astype(np.int32 if block.size == 1 and palettes <= 256 else np.int64)
    picked = lut.reshape(-1, vector)[flat]  # [*indices, vector]
    if vector == 1:
        return picked[..., 0]
    if vector_axis is None:
        raise WorkbenchError("constexpr_lut_to_dense with vectors of size > 1 needs vector_axis; the model is "
                             "malformed, re-export it")
    a = int(scalar(vector_axis)) % rank
    picked = np.moveaxis(picked, -1, a + 1)  # [..., n_a, vector, ...]
    shape = list(indices.shape)
    shape[a] *= vector
    return picked.reshape(shape)


@op("constexpr_lut_to_dense", since=16)
def constexpr_lut_to_dense(indices, lut, shape=None, vector_axis=None):
    lut_np = _np(lut)
    if shape is not None:  # iOS16: a flat lut, indices packed into bytes
        dims = ints(shape)
        count = int(np.prod(dims, dtype=np.int64))
        nbits = int(np.log2(lut_np.size))
        return _out(lut_np.reshape(-1)[_unpack_bits(indices, nbits, count)].reshape(dims))
    return _out(_lut_to_dense(_np(indices), lut_np, vector_axis))


def _sparse_to_dense(nonzero: np.ndarray, mask: np.ndarray) -> np.ndarray:
    dense = np.zeros(mask.shape, dtype=nonzero.dtype)
    dense[mask != 0] = nonzero.reshape(-1)
    return dense


@op("constexpr_sparse_to_dense", since=16)
def constexpr_sparse_to_dense(nonzero_data, mask, shape=None):
    data = _np(nonzero_data)
    if shape is not None:  # iOS16: a bit mask packed into bytes, row-major over `shape`
        dims = ints(shape)
        count = int(np.prod(dims, dtype=np.int64))
        bits = np.unpackbits(_np(mask).astype(np.uint8).reshape(-1), bitorder="little")[:count]
        return _out(_sparse_to_dense(data, bits.reshape(dims)))
    return _out(_sparse_to_dense(data, _np(mask)))


def _shift_scale(data: np.ndarray, scale: np.ndarray, offset) -> np.ndarray:
    out = data.astype(np.float32)
    if offset is not None:
        out = _blockwise(out, _np(offset).astype(np.float32), np.subtract)
    return _blockwise(out, scale.astype(np.float32), np.multiply)


@op("constexpr_blockwise_shift_scale", since=18)
def constexpr_blockwise_shift_scale(data, scale, offset=None):
    """scale * (data - offset), with one scale (and offset) per block of the output."""
    return _out(_shift_scale(_np(data), _np(scale), offset))


@op("constexpr_lut_to_sparse", since=18)
def constexpr_lut_to_sparse(indices_mask, indices_nonzero_data, lut, vector_axis=None):
    """(mask, values): the LUT applied to the nonzero indices only; a vector LUT widens the mask."""
    mask, lut_np = _np(indices_mask), _np(lut)
    dense = _lut_to_dense(_sparse_to_dense(_np(indices_nonzero_data), mask), lut_np, vector_axis)
    if lut_np.shape[-1] > 1:
        mask = np.repeat(mask, lut_np.shape[-1], int(scalar(vector_axis)) % mask.ndim)
    return _out(mask.astype(np.uint8)), _out(dense[mask != 0])


@op("constexpr_sparse_blockwise_shift_scale", since=18)
def constexpr_sparse_blockwise_shift_scale(data_mask, nonzero_data, scale, offset=None):
    """(mask, values): blockwise shift-scale applied to the nonzero data only."""
    mask = _np(data_mask)
    dense = _shift_scale(_sparse_to_dense(_np(nonzero_data), mask), _np(scale), offset)
    return _out(mask.astype(np.uint8)), _out(dense[mask != 0])
