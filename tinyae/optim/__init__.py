"""Optimizers and learning-rate schedules, with PyTorch's names, defaults and update rules.

    from tinyae import optim
    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    for epoch in range(epochs):
        for x, _ in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), x)
            loss.backward()
            opt.step()
        sched.step()

Gradient clipping is ``tinyae.nn.utils.clip_grad_norm_`` (as ``torch.nn.utils``).
"""

from tinyae.optim import lr_scheduler
from tinyae.optim.adam import Adam, AdamW
from tinyae.optim.optimizer import Optimizer
from tinyae.optim.rmsprop import RMSprop
from tinyae.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
