"""End to end against PyTorch: the same model, data, loss and optimizer give the same
weights after several training steps (float64)."""
import numpy as np
import pytest

import rnnfast
from rnnfast import optim
from rnnfast.layers import Embedding, LastStep, Linear
from rnnfast.models import Sequential

torch = pytest.importorskip("torch")


def _torch_tagger(V, E, H, C, bidirectional):
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E, padding_idx=0)
            self.lstm = torch.nn.LSTM(E, H, num_layers=2, batch_first=True,
                                      bidirectional=bidirectional)
            self.out = torch.nn.Linear(H * (2 if bidirectional else 1), C)

        def forward(self, x, lengths):
            e = self.emb(x)
            packed = torch.nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True,
                                                             enforce_sorted=False)
            y, _ = self.lstm(packed)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                          total_length=x.shape[1])
            return self.out(y)
    return Tagger().double()


@pytest.mark.parametrize("opt_name", ["Adam", "SGD"])
def test_sequence_tagger_training_matches_torch(opt_name):
    V, E, H, C, N, T = 11, 5, 6, 4, 8, 7
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, (N, T))
    lengths = rng.integers(1, T + 1, N)
    y = rng.integers(0, C, (N, T))
    tmodel = _torch_tagger(V, E, H, C, bidirectional=True)
    model = Sequential([Embedding(V, E, padding_idx=0, dtype=np.float64),
                        rnnfast.LSTM(E, H, num_layers=2, batch_first=True, bidirectional=True,
                                     dtype=np.float64),
                        Linear(2 * H, C, dtype=np.float64)])
    mapping = {"0.weight": "emb.weight", "2.weight": "out.weight", "2.bias": "out.bias"}
    mapping.update({f"1.{k}": f"lstm.{k}" for k in dict(model[1].named_parameters())})
    sd = tmodel.state_dict()
    model.load_state_dict({k: sd[v].numpy() for k, v in mapping.items()})
    kw = {"lr": 0.05, "momentum": 0.9} if opt_name == "SGD" else {"lr": 0.01}
    model.compile("cross_entropy", getattr(optim, opt_name)(model.named_parameters(), **kw),
                  clip_norm=2.0)
    topt = getattr(torch.optim, opt_name)(tmodel.parameters(), **kw)
    model.fit(x, y, lengths, epochs=5, batch_size=N, shuffle=False, progress=False)
    tx, ty = torch.tensor(x), torch.tensor(np.where(np.arange(T)[None] < lengths[:, None], y,
                                                    -100))
    tl = torch.tensor(lengths)
    for _ in range(5):
        topt.zero_grad()
        logits = tmodel(tx, tl)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, C), ty.reshape(-1),
                                                 ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 2.0)
        topt.step()
    sd = tmodel.state_dict()
    worst = 0.0
    for k, v in mapping.items():
        ours, theirs = model.named_parameters()[k], sd[v].numpy()
        worst = max(worst, np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    print(f"{opt_name}: weights after 5 steps vs torch: max rel diff {worst:.2e}")
    assert worst < 1e-11


def test_many_to_one_loss_matches_torch():
    V, E, H, N, T = 7, 4, 5, 6, 9
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, (N, T))
    lengths = rng.integers(1, T + 1, N)
    y = rng.integers(0, 3, N)
    model = Sequential([Embedding(V, E, dtype=np.float64, seed=0),
                        rnnfast.GRU(E, H, batch_first=True, dtype=np.float64, seed=1),
                        LastStep(), Linear(H, 3, dtype=np.float64, seed=2)])
    model.compile("cross_entropy", "sgd")
    ours = model.evaluate(x, y, lengths)["loss"]
    emb = torch.tensor(model[0].weight)
    gru = torch.nn.GRU(E, H, batch_first=True).double()
    gru.load_state_dict({k: torch.tensor(v) for k, v in model[1].named_parameters()})
    packed = torch.nn.utils.rnn.pack_padded_sequence(emb[torch.tensor(x)], torch.tensor(lengths),
                                                     batch_first=True, enforce_sorted=False)
    _, h_n = gru(packed)
    logits = h_n[0] @ torch.tensor(model[3].weight).T + torch.tensor(model[3].bias)
    theirs = float(torch.nn.functional.cross_entropy(logits, torch.tensor(y)).detach())
    assert abs(ours - theirs) <= 1e-13 * abs(theirs)


def test_losses_match_torch_including_extremes():
    from rnnfast.losses import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5, 7, 6)) * 5
    logits[0, 0] = [1e4, -1e4, 0, 3e3, -2e3, 1]
    logits[1, 2] = -1e4
    t = rng.integers(0, 6, (5, 7))
    tl = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tl.reshape(-1, 6), torch.tensor(t).reshape(-1))
    ref.backward()
    loss, g = softmax_cross_entropy(logits, t)
    assert abs(loss - float(ref.detach())) <= 1e-13 * abs(float(ref.detach()))
    np.testing.assert_allclose(g, tl.grad.numpy(), rtol=1e-12, atol=1e-17)
    x = rng.standard_normal((4, 9)) * 10
    x[0, :4] = [1e4, -1e4, 5e3, -5e3]
    y = rng.random((4, 9))
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(xt, torch.tensor(y))
    ref.backward()
    loss, g = binary_cross_entropy_with_logits(x, y)
    assert abs(loss - float(ref.detach())) <= 1e-13 * abs(float(ref.detach()))
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-17)
    p = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.mse_loss(p, torch.tensor(y))
    ref.backward()
    loss, g = mse(x, y)
    assert abs(loss - float(ref.detach())) <= 1e-13 * abs(float(ref.detach()))
    np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-12, atol=1e-17)
