"""A user's own data-parallel training loop for ``data-parallel-pbt.yaml``: Ray Train's
``train_loop_per_worker``, run on every rank of a trial. A small MLP fits y = sin(3x) with DDP
(``ray.train.torch.prepare_model``), each rank on its own shard of the training points; its
state (weights, optimizer, epoch) goes with rank 0's result through ``raytune_hpo.report``, so
PBT can copy it and every rank of the exploiting trial restores it (``restore_state``)."""

import ray.train
import ray.train.torch
import torch

import raytune_hpo


def points(n: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """The same noisy sin(3x) on [-2, 2] on every rank."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    return x, torch.sin(3 * x) + 0.05 * torch.randn(n, 1, generator=g)


def train_loop(config: dict) -> None:
    ctx = ray.train.get_context()
    rank, ranks = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 1),
    )
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    state = raytune_hpo.restore_state()  # this trial's last, or the one PBT copied
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a copied state keeps its buffers, takes our values
            group["lr"], group["momentum"] = config["lr"], config["momentum"]
    model = ray.train.torch.prepare_model(model)  # DDP on 2+ ranks: gradients averaged
    x, y = points()
    x_train, y_train = x[:1792][rank::ranks], y[:1792][rank::ranks]  # this rank's shard
    x_val, y_val = x[1792:], y[1792:]
    batch = max(1, int(config["batch_size"]) // ranks)
    for epoch in range((state or {}).get("epoch", 0) + 1, int(config["epochs"]) + 1):
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        with torch.no_grad():
            val_loss = float(torch.nn.functional.mse_loss(model(x_val), y_val))
        inner = getattr(model, "module", model)
        raytune_hpo.report(
            {"val_loss": val_loss, "epoch": epoch},
            state={"model": inner.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch},
        )
