"""Neural-network control flow: copy lives in tensor.py; here branch, loop, loopBreak and loopContinue.

Nested networks share the enclosing network's blob names. A branch or loop compiles its networks into
step lists that run on one shared dictionary of blobs: at the top level the step receives the blobs its
networks read (captures) and returns every blob they write; inside another nested network it works on
that network's dictionary directly, so a loopBreak inside a branch inside a loop body keeps what ran
before it. A branch runs its if-network when |condition| > 1e-6; a loop runs while its condition network
leaves |conditionVar| > 1e-6, at most maxLoopIterations times (or the input's value) when given.
"""

from __future__ import annotations

from ...errors import WorkbenchError
from ..program import CAPTURE
from . import _Builder, add_layer, layer


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def _compile(b: _Builder, network) -> list:
    sub = _Builder(b.known)
    for nn_layer in network.layers:
        add_layer(sub, nn_layer)
    return sub.steps


def run_shared(steps: list, env: dict) -> None:
    """Run steps on `env`, writing their outputs into it (nested control flow works on it directly)."""
    for step in steps:
        shared = getattr(step.fn, "run_shared", None)
        if shared is not None:
            shared(env)
            continue
        kwargs = dict(step.static)
        for arg, ref in step.dynamic:
            kwargs[arg] = [env[r] for r in ref] if isinstance(ref, list) else env[ref]
        result = step.fn(**kwargs)
        if not isinstance(result, tuple):
            result = (result,)
        for (name, _), value in zip(step.outputs, result):
            env[name] = value


def _reads_writes(*step_lists):
    reads, writes = [], []
    for steps in step_lists:
        for step in steps:
            for _, ref in step.dynamic:
                for n in ref if isinstance(ref, list) else [ref]:
                    if n not in writes and n not in reads:
                        reads.append(n)
            for n, _ in step.outputs:
                if n not in writes:
                    writes.append(n)
    return reads, writes


def _add_nested(b: _Builder, name: str, op_type: str, own: list, step_lists: list, run) -> None:
    """One step that runs `run(env)` on the captured blobs and returns every blob the networks write."""
    reads, writes = _reads_writes(*step_lists)
    captures = [n for n in own + reads + writes if n in b.known]
    captures = list(dict.fromkeys(captures))

    def fn(**captured):
        env = {k[len(CAPTURE):]: v for k, v in captured.items()}
        run(env)
        return tuple(env.get(w) for w in writes)

    fn.run_shared = run
    b.add(name, op_type, [], writes, dynamic=[(f"{CAPTURE}{n}", n) for n in captures], fn=fn)


def _true(value) -> bool:
    return bool(abs(float(value.reshape(-1)[0])) > 1e-6)


@layer("branch")
def _branch(b, name, p, inputs, outputs):
    then = _compile(b, p.ifBranch)
    otherwise = _compile(b, p.elseBranch)
    condition = inputs[0]

    def run(env):
        run_shared(then if _true(env[condition]) else otherwise, env)

    _add_nested(b, name, "branch", [condition], [then, otherwise], run)


@layer("loop")
def _loop(b, name, p, inputs, outputs):
    test = _compile(b, p.conditionNetwork) if p.conditionVar else []
    body = _compile(b, p.bodyNetwork)
    var, limit_blob, max_iterations = p.conditionVar, (inputs[0] if inputs else None), int(p.maxLoopIterations)
    if not var and not limit_blob and max_iterations <= 0:
        raise WorkbenchError(f"loop layer {name!r} has no condition and no iteration count: it would never end")

    def run(env):
        limit = int(float(env[limit_blob].reshape(-1)[0])) if limit_blob else (max_iterations or None)
        done = 0
        while limit is None or done < limit:
            if var:
                run_shared(test, env)
                if not _true(env[var]):
                    break
            done += 1
            try:
                run_shared(body, env)
            except _Continue:
                continue
            except _Break:
                break

    own = ([limit_blob] if limit_blob else []) + ([var] if var else [])
    _add_nested(b, name, "loop", own, [test, body], run)


def _raise(signal):
    def fn():
        raise signal()

    return fn


@layer("loopBreak")
def _loop_break(b, name, p, inputs, outputs):
    b.add(name, "loop_break", [], [], dynamic=[], fn=_raise(_Break))


@layer("loopContinue")
def _loop_continue(b, name, p, inputs, outputs):
    b.add(name, "loop_continue", [], [], dynamic=[], fn=_raise(_Continue))
