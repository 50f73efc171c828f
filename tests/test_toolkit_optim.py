"""Optimizers, schedules and clipping against torch (float64, step by step)."""
import numpy as np
import pytest

from rnnfast import optim

torch = pytest.importorskip("torch")

STEPS = 25


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grads_seq = [{k: rng.standard_normal(v.shape) for k, v in params.items()}
                 for _ in range(STEPS)]
    return params, grads_seq


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


CASES = [
    ("SGD", dict(lr=0.1), dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
     dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.1),
     dict(lr=0.05, momentum=0.5, dampening=0.3, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01), dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.8, weight_decay=0.01,
                     centered=True),
     dict(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.8, weight_decay=0.01, centered=True)),
    ("Adam", dict(lr=0.01), dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05),
     dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01), dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, betas=(0.85, 0.95)),
     dict(lr=0.01, weight_decay=0.3, betas=(0.85, 0.95))),
]


@pytest.mark.parametrize("name,ours_kw,torch_kw", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_optimizer_matches_torch_step_by_step(name, ours_kw, torch_kw):
    params, grads_seq = _problem()
    tparams = {k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
               for k, v in params.items()}
    ours = getattr(optim, name)(params, **ours_kw)
    theirs = getattr(torch.optim, name)(list(tparams.values()), **torch_kw)
    worst = 0.0
    for grads in grads_seq:
        ours.step(grads)
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k])
        theirs.step()
        for k in params:
            worst = max(worst, _rel(params[k], tparams[k].detach().numpy()))
    print(f"{name} {ours_kw}: max rel diff to torch over {STEPS} steps {worst:.2e}")
    assert worst <= 1e-12


def test_lr_is_settable_and_state_dict_round_trip():
    params, grads_seq = _problem(1)
    twin = {k: v.copy() for k, v in params.items()}
    a = optim.Adam(params, lr=0.01)
    for g in grads_seq[:5]:
        a.step(g)
    b = optim.Adam(twin, lr=0.5)
    for g in grads_seq[:5]:
        b.step(g)
    # b diverged from a; reload a's weights and state into b, then both continue alike
    for k in twin:
        twin[k][...] = params[k]
    b.load_state_dict(a.state_dict())
    assert b.lr == 0.01 and b.step_count == 5
    a.lr = 0.003
    b.lr = 0.003
    for g in grads_seq[5:]:
        a.step(g)
        b.step(g)
    for k in params:
        assert np.array_equal(params[k], twin[k])


def test_optimizer_input_errors():
    params = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="'lr'"):
        optim.SGD(params, lr=-1)
    with pytest.raises(TypeError, match="'params'"):
        optim.Adam([np.zeros(3)])
    opt = optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="'grads'.*'v'"):
        opt.step({"v": np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"w": np.zeros(4)})
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)


def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(3)
    for max_norm in (0.5, 3.0, 100.0):
        grads = {"a": rng.standard_normal((5, 4)), "b": rng.standard_normal(7)}
        ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
        for t, g in zip(ts, grads.values()):
            t.grad = torch.tensor(g.copy())
        total_t = float(torch.nn.utils.clip_grad_norm_(ts, max_norm))
        total = optim.clip_grad_norm(grads, max_norm)
        assert abs(total - total_t) <= 1e-12 * total_t
        for t, g in zip(ts, grads.values()):
            assert _rel(g, t.grad.numpy()) <= 1e-15
    grads = {"a": np.array([3.0, -4.0])}
    optim.clip_grad_value(grads, 1.5)
    assert np.array_equal(grads["a"], [1.5, -1.5])
    bad = {"a": np.array([np.nan, 1.0])}
    assert np.isnan(optim.clip_grad_norm(bad, 1.0)) and bad["a"][1] == 1.0


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_schedules_match_torch(kind):
    p = {"w": np.zeros(2)}
    opt = optim.SGD(p, lr=0.3)
    tp = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.3)
    if kind == "step":
        ours = optim.StepLR(opt, step_size=3, gamma=0.5)
        theirs = torch.optim.lr_scheduler.StepLR(topt, step_size=3, gamma=0.5)
    else:
        ours = optim.CosineAnnealingLR(opt, T_max=7, eta_min=0.01)
        theirs = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=7, eta_min=0.01)
    worst = 0.0
    for _ in range(20):
        topt.step()
        ours.step()
        theirs.step()
        a, b = ours.get_last_lr()[0], theirs.get_last_lr()[0]
        assert opt.lr == a
        worst = max(worst, abs(a - b) / b)
    print(f"{kind} schedule: max rel diff to torch over 20 epochs {worst:.2e}")
    assert worst <= 1e-12


def test_step_on_locked_recurrent_weights_says_why():
    import rnnfast
    lstm = rnnfast.LSTM(2, 3, seed=0)
    opt = optim.SGD(dict(lstm.named_parameters()), lr=0.1)
    lstm.eval()
    for _ in range(2):                              # the second call packs and locks
        lstm(np.zeros((2, 1, 2), np.float32))
    grads = {k: np.ones_like(v) for k, v in lstm.named_parameters()}
    with pytest.raises(ValueError, match="read-only.*flatten_parameters"):
        opt.step(grads)
    lstm.train()
    opt.step(grads)
    assert opt.step_count == 1
