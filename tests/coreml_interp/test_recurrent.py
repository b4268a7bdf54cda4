"""ops/recurrent.py: lstm, gru and rnn against PyTorch's layers (weights reordered to MIL's gate layouts)
and, where PyTorch has no equivalent (GRU's reset-before, peepholes, clip), a numpy loop."""

import coremltools as ct
import numpy as np
import pytest
import torch
from _mil import IOS17, assert_close, mb, rand, run_op

# fp32 recurrences over 4 steps of 3-6 term sums
ATOL, RTOL = 1e-5, 1e-5
S, B, I, H = 4, 2, 3, 5


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _torch_lstm(bidirectional=False):
    torch.manual_seed(0)
    return torch.nn.LSTM(I, H, bidirectional=bidirectional).eval()


def _ifoz(w):
    """PyTorch's [i, f, g, o] gate blocks as MIL's [i, f, o, z (= g)]."""
    i, f, g, o = np.split(w.detach().numpy(), 4)
    return np.concatenate([i, f, o, g])


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("output_sequence", [True, False])
def test_lstm_matches_torch(direction, output_sequence):
    net = _torch_lstm()
    x, h0, c0 = rand(S, B, I), rand(B, H, seed=1), rand(B, H, seed=2)
    sd = dict(net.named_parameters())

    def build(x, h, c):
        return mb.lstm(x=x, initial_h=h, initial_c=c, weight_ih=_ifoz(sd["weight_ih_l0"]),
                       weight_hh=_ifoz(sd["weight_hh_l0"]), bias=_ifoz(sd["bias_ih_l0"] + sd["bias_hh_l0"]),
                       direction=direction, output_sequence=output_sequence)

    seq, h, c = run_op("lstm", build, x, h0, c0)
    steps = x[::-1].copy() if direction == "reverse" else x  # reverse: the outputs in processing order
    ref, (hn, cn) = net(torch.from_numpy(steps), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    ref = ref.detach().numpy()
    assert_close(seq, ref if output_sequence else ref[-1:], ATOL, RTOL, "output")
    assert_close(h, hn[0].detach().numpy(), ATOL, RTOL, "final h")
    assert_close(c, cn[0].detach().numpy(), ATOL, RTOL, "final c")


@pytest.mark.parametrize("output_sequence", [True, False])
def test_bidirectional_lstm_matches_torch(output_sequence):
    net = _torch_lstm(bidirectional=True)
    x, h0, c0 = rand(S, B, I), rand(B, 2 * H, seed=1), rand(B, 2 * H, seed=2)
    sd = dict(net.named_parameters())

    def build(x, h, c):
        return mb.lstm(x=x, initial_h=h, initial_c=c, weight_ih=_ifoz(sd["weight_ih_l0"]),
                       weight_hh=_ifoz(sd["weight_hh_l0"]), bias=_ifoz(sd["bias_ih_l0"] + sd["bias_hh_l0"]),
                       weight_ih_back=_ifoz(sd["weight_ih_l0_reverse"]),
                       weight_hh_back=_ifoz(sd["weight_hh_l0_reverse"]),
                       bias_back=_ifoz(sd["bias_ih_l0_reverse"] + sd["bias_hh_l0_reverse"]),
                       direction="bidirectional", output_sequence=output_sequence)

    seq, h, c = run_op("lstm", build, x, h0, c0)
    split = lambda v: torch.from_numpy(np.stack([v[:, :H], v[:, H:]]))  # noqa: E731
    ref, (hn, cn) = net(torch.from_numpy(x), (split(h0), split(c0)))
    ref = ref.detach().numpy()
    expected = ref if output_sequence else np.concatenate([ref[-1:, :, :H], ref[:1, :, H:]], -1)
    assert_close(seq, expected, ATOL, RTOL, "output")
    assert_close(h, np.concatenate([hn[0].detach().numpy(), hn[1].detach().numpy()], -1), ATOL, RTOL, "final h")
    assert_close(c, np.concatenate([cn[0].detach().numpy(), cn[1].detach().numpy()], -1), ATOL, RTOL, "final c")


def test_lstm_peephole_clip_and_activations():
    rng = np.random.default_rng(3)
    w_ih, w_hh = rng.uniform(-1, 1, (4 * H, I)).astype(np.float32), rng.uniform(-1, 1, (4 * H, H)).astype(np.float32)
    bias, peep = rng.uniform(-1, 1, 4 * H).astype(np.float32), rng.uniform(-1, 1, 3 * H).astype(np.float32)
    x, h0, c0 = rand(S, B, I), rand(B, H, seed=1), rand(B, H, seed=2)
    clip = 0.4

    def build(x, h, c):
        return mb.lstm(x=x, initial_h=h, initial_c=c, weight_ih=w_ih, weight_hh=w_hh, bias=bias, peephole=peep,
                       recurrent_activation="hard_sigmoid", cell_activation="relu", activation="sigmoid",
                       clip=np.float32(clip), output_sequence=True)

    seq, h, c = run_op("lstm", build, x, h0, c0)
    hard = lambda v: np.clip(0.2 * v + 0.5, 0, 1)  # noqa: E731
    hh, cc, outs = h0.astype(np.float64), c0.astype(np.float64), []
    wi, wf, wo, wz = np.split(w_ih, 4)
    ri, rf, ro, rz = np.split(w_hh, 4)
    bi, bf, bo, bz = np.split(bias, 4)
    pi, pf, po = np.split(peep, 3)
    for xt in x:
        i = hard(xt @ wi.T + hh @ ri.T + bi + cc * pi)
        f = hard(xt @ wf.T + hh @ rf.T + bf + cc * pf)
        cc = np.clip(f * cc + i * np.maximum(xt @ wz.T + hh @ rz.T + bz, 0), -clip, clip)
        o = hard(xt @ wo.T + hh @ ro.T + bo + cc * po)
        hh = o * _sigmoid(cc)
        outs.append(hh)
    assert_close(seq, np.stack(outs), ATOL, RTOL)
    assert_close(c, cc, ATOL, RTOL)
    assert np.abs(c).max() <= clip + 1e-6


@pytest.mark.parametrize("output_sequence", [True, False])
def test_ios18_gru_reset_after_matches_torch(output_sequence):
    torch.manual_seed(0)
    net = torch.nn.GRU(I, H).eval()
    sd = {k: v.detach().numpy() for k, v in net.named_parameters()}
    roz = lambda w: np.concatenate([np.split(w, 3)[i] for i in (0, 2, 1)])  # noqa: E731  torch r, z, n -> r, o, z
    x, h0 = rand(S, B, I), rand(B, H, seed=1)

    def build(x, h):
        return mb.gru(x=x, initial_h=h, weight_ih=roz(sd["weight_ih_l0"]), weight_hh=roz(sd["weight_hh_l0"]),
                      input_bias=roz(sd["bias_ih_l0"]), bias=roz(sd["bias_hh_l0"]), reset_after=True,
                      output_sequence=output_sequence)

    seq, h = run_op("gru", build, x, h0, opset=ct.target.iOS18)
    ref, hn = net(torch.from_numpy(x), torch.from_numpy(h0)[None])
    ref = ref.detach().numpy()
    assert_close(seq, ref if output_sequence else ref[-1:], ATOL, RTOL)
    assert_close(h, hn[0].detach().numpy(), ATOL, RTOL)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_gru_reset_before(direction):
    rng = np.random.default_rng(4)
    w_ih, w_hh = rng.uniform(-1, 1, (3 * H, I)).astype(np.float32), rng.uniform(-1, 1, (3 * H, H)).astype(np.float32)
    bias = rng.uniform(-1, 1, 3 * H).astype(np.float32)
    x, h0 = rand(S, B, I), rand(B, H, seed=1)
    seq, h = run_op("gru", lambda x, h: mb.gru(x=x, initial_h=h, weight_ih=w_ih, weight_hh=w_hh, bias=bias,
                                               direction=direction, output_sequence=True), x, h0, opset=IOS17)
    # coremltools' numpy reference (its iOS14 op tests): reset applied to h before the recurrent matmul
    wr, wo, wz = np.split(w_ih, 3)
    rr, ro, rz = np.split(w_hh, 3)
    br, bo, bz = np.split(bias, 3)
    hh, outs = h0.astype(np.float64), []
    for xt in (x if direction == "forward" else x[::-1]):
        z = _sigmoid(xt @ wz.T + hh @ rz.T + bz)
        r = _sigmoid(xt @ wr.T + hh @ rr.T + br)
        o = np.tanh(xt @ wo.T + (hh * r) @ ro.T + bo)
        hh = (1 - z) * o + z * hh
        outs.append(hh)
    assert_close(seq, np.stack(outs), ATOL, RTOL)
    assert_close(h, hh, ATOL, RTOL)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_matches_torch(activation):
    torch.manual_seed(0)
    net = torch.nn.RNN(I, H, nonlinearity=activation).eval()
    sd = {k: v.detach().numpy() for k, v in net.named_parameters()}
    x, h0 = rand(S, B, I), rand(B, H, seed=1)
    seq, h = run_op("rnn", lambda x, h: mb.rnn(x=x, initial_h=h, weight_ih=sd["weight_ih_l0"],
                                               weight_hh=sd["weight_hh_l0"], bias=sd["bias_ih_l0"] + sd["bias_hh_l0"],
                                               activation=activation.upper() if activation == "relu" else activation,
                                               output_sequence=True), x, h0)
    ref, hn = net(torch.from_numpy(x), torch.from_numpy(h0)[None])
    assert_close(seq, ref.detach().numpy(), ATOL, RTOL)
    assert_close(h, hn[0].detach().numpy(), ATOL, RTOL)
