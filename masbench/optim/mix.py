"""Mix: a weighted mix of N optimizers, generalising MAS."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import _use_grad_for_differentiable

from masbench.optim import mix_kinds, mix_mas as mas_path
from masbench.optim.mix_kinds import KINDS
from masbench.optim.registry import OPTIMIZERS, hyperparameter_names, optimizer_class, resolve_optimizer
from masbench.text.shown import one_line

# Hyperparameters a Mix takes once for all components (None: each component's own default).
SHARED = ("betas", "eps", "weight_decay", "amsgrad", "momentum", "dampening", "nesterov", "bias_correction")
_FLOATS = ("eps", "weight_decay", "momentum", "dampening")


class Mix(Optimizer):
    r"""A mix of optimizers with weights :math:`\lambda_i \ge 0`; ``Mix(adam=a, sgd=s)`` is ``MAS`` at those lambdas.

    Components whose update is a step size times a direction (``mix_kinds``: sgd, adam, adamw, adamax,
    nadam, rmsprop, adagrad and lion) follow the paper's product form, in one pass over the parameters:

    .. math::
        p_t = p_{t-1} \textstyle\prod_i (1 - \lambda_i\,\text{lr}_i\,\text{wd}^{dec}_i)
              - \big(\sum_i \lambda_i \eta_i\big)\big(\sum_i \lambda_i d_i\big)

    where :math:`\eta_i, d_i` are component i's step size and direction at step t, and
    :math:`\text{wd}^{dec}_i` its decoupled weight decay (AdamW, Lion; 0 for the others, whose weight decay
    is L2 in the gradient). Any other ``torch.optim.Optimizer`` (a registered name such as ``adadelta``, an
    import path ``pkg.mod:Class``, or the class) joins by a different rule, the linear form: it steps its
    own copy of the parameters, from :math:`p_{t-1}` and the same gradient, and adds :math:`\lambda_j
    \Delta_j` to the result above, :math:`\Delta_j` being that copy's move. It costs one more copy of the
    parameters, and the moves add: their step sizes do not multiply the other directions.

    Components update their state at every step, even while their weight is zero. A single component
    of weight 1 performs exactly the operations of torch's single-tensor optimizer (``foreach=False``),
    so it equals it bit for bit; ``Mix(adam=a, sgd=s)`` equals ``MAS(..., foreach=False, fused=False)``
    bit for bit, in every floating dtype. Components are applied in a fixed order (``KINDS``'s, then the
    others by name), so the order the weights are written in never changes the numbers.

    The loop above is the reference. A mix of adam and sgd alone (with one weight decay and the group's
    lr) may run MAS's multi-tensor or fused kernels instead (``foreach``, ``fused``; with neither given,
    MAS's default path: fused on CPU, foreach on CUDA), so that ``--optimizer mix:adam=a,sgd=s`` and
    ``mas`` at those lambdas give the same numbers; ``foreach=False, fused=False`` keeps the loop.

    ``torch.compile(opt.step)`` compiles once, as MAS's: the state is made in ``_init_group`` (which dynamo
    runs eagerly), step counts stay tensors while compiling, and the fused kernels run outside the graph.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: the learning rate of every component that sets none of its own (an lr schedule changes it).
        weights: ``{component: weight}``; keyword weights (``adam=0.3``) join it.
        components: ``{component: {hyperparameter: value}}``, each component's own settings, e.g.
            ``{"sgd": {"momentum": 0.9, "lr": 0.1}}``; a component's own ``lr`` is fixed.
        betas, eps, weight_decay, amsgrad, momentum, dampening, nesterov, bias_correction: given (not
            None), each applies to every component that takes it, unless that component sets its own.
        foreach, fused: the path of a mix of adam and sgd alone (see above); other mixes run the loop.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = Mix(model.parameters(), lr=1e-3, adam=0.3, sgd=0.5, rmsprop=0.2,
        ...           components={"sgd": {"momentum": 0.9}})
        >>> model(torch.randn(8, 4)).pow(2).mean().backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        weights: Mapping[Any, float] | None = None,
        components: Mapping[Any, Mapping[str, Any]] | None = None,
        betas: tuple[float, float] | None = None,
        eps: float | None = None,
        weight_decay: float | None = None,
        amsgrad: bool | None = None,
        momentum: float | None = None,
        dampening: float | None = None,
        nesterov: bool | None = None,
        bias_correction: str | None = None,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
        **keyword_weights: float,
    ) -> None:
        shared = dict(betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, momentum=momentum,
                      dampening=dampening, nesterov=nesterov, bias_correction=bias_correction)
        defaults = dict(lr=lr, weights={**dict(weights or {}), **keyword_weights},
                        components=dict(components or {}), shared=shared, foreach=foreach, fused=fused,
                        differentiable=False)
        self._linear: dict[str, Optimizer] = {}
        super().__init__(params, _resolved(defaults))
        self._scratch = {p: torch.zeros_like(p) for group in self.param_groups for p in group["params"]}
        for name in _linear_names(self.param_groups[0]):
            self._linear[name] = _build_linear(name, self.param_groups, self._scratch)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.update(_resolved(group))
        if len(self.param_groups) > 1 and set(group["weights"]) != set(self.param_groups[0]["weights"]):
            raise ValueError(f"Invalid weights for a param group: components {sorted(group['weights'])} "
                             f"(every group mixes the same components: {sorted(self.param_groups[0]['weights'])})")
        if self._linear:
            for p in group["params"]:
                self._scratch[p] = torch.zeros_like(p)
            for name, inner in self._linear.items():
                inner.add_param_group({"params": [self._scratch[p] for p in group["params"]],
                                       **_linear_hparams(name, inner.defaults, group)})

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["linear"] = {name: inner.state_dict() for name, inner in self._linear.items()}
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        linear = state_dict.pop("linear", {})
        if set(linear) != set(self._linear):
            raise ValueError(f"Invalid Mix state: linear components {sorted(linear)} saved, "
                             f"{sorted(self._linear)} in this optimizer")
        scalars = _scalars(state_dict)
        super().load_state_dict(state_dict)
        # torch casts every state tensor but ``step`` to the parameter's dtype: NAdam's mu_product and the
        # steps stay float32 on the host, as they were made, so that a resumed run continues exactly.
        ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for saved_id, p in zip(ids, params):
            for kind, key, value in scalars.get(saved_id, ()):
                self.state[p][kind][key] = value.to(device="cpu", dtype=torch.float32)
        for name, inner in self._linear.items():
            inner.load_state_dict(linear[name])

    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        moves = self._linear_moves()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            self._init_group(group, params)
            if params and mas_path.takes(group, params, bool(self._linear)):
                mas_path.step([self.state[p] for p in params], group, params)
                continue
            kinds = [(name, group["weights"][name]) for name in _product_names(group)]
            for p in params:
                self._step_param(p, group, kinds)
                if p in moves:
                    p.add_(moves[p])
        return loss

    def _init_group(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Fill ``params`` with the group's parameters that have a gradient, and make each one's state of every
        product component that has none yet.

        It fills a list it is given and returns nothing, as torch's optimizers do: under ``torch.compile``
        dynamo runs this method eagerly, so that the state it makes at the first step is no guard that fails
        at the next (made while tracing, it recompiled the step per parameter until dynamo's limit).
        """
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse or torch.is_complex(p):
                raise RuntimeError(f"Mix takes dense real parameters and gradients (got {p.dtype}, "
                                   f"{'sparse' if p.grad.is_sparse else 'dense'} gradient)")
            state = self.state[p]
            for name in _product_names(group):
                if name not in state:
                    state[name] = mix_kinds.init_state(name, p, group["components"][name])
            params.append(p)

    def _step_param(self, p: torch.Tensor, group: dict[str, Any], kinds: list[tuple[str, float]]) -> None:
        """The product form on one parameter: every component's state first (they read p_{t-1}), then p."""
        state = self.state[p]
        prepared = []
        for name, weight in kinds:
            hp = group["components"][name]
            prepared.append(mix_kinds.prepare(name, p, p.grad, state[name], hp, hp.get("lr", group["lr"])))
        for name, weight in kinds:
            hp = group["components"][name]
            rate = mix_kinds.decay(name, hp)
            if weight != 0 and rate != 0:
                p.mul_(1 - weight * hp.get("lr", group["lr"]) * rate)
        # A zero weight stays out of the sum and moves nothing: 0 * inf (a step size of 1 / bc1 when bc1
        # underflows) would be NaN, and 0 * (0 / 0) too with eps = 0. x + 0.0 == x, so this is the same sum.
        c = sum(weight * eta for (_, weight), (eta, _) in zip(kinds, prepared) if weight != 0)
        for (_, weight), (_, apply) in zip(kinds, prepared):
            if weight != 0:
                apply(c * weight)

    def _linear_moves(self) -> dict[torch.Tensor, torch.Tensor]:
        """``sum_j lambda_j * Delta_j`` per parameter: each linear component stepped on a copy of p_{t-1}."""
        moves: dict[torch.Tensor, torch.Tensor] = {}
        for name, inner in self._linear.items():
            for group, inner_group in zip(self.param_groups, inner.param_groups):
                if "lr" not in group["components"][name]:
                    inner_group["lr"] = group["lr"]
                for p in group["params"]:
                    scratch = self._scratch[p]
                    scratch.copy_(p)
                    scratch.grad = p.grad
            inner.step()
            for group in self.param_groups:
                weight = group["weights"][name]
                for p in group["params"]:
                    self._scratch[p].grad = None
                    if p.grad is not None and weight != 0:
                        move = (self._scratch[p] - p).mul_(weight)
                        moves[p] = moves[p].add_(move) if p in moves else move
        return moves


def check_weights(weights: Mapping[Any, Any]) -> None:
    """Each weight a finite number >= 0, and not all zero; ValueError names the first bad one."""
    if not weights:
        raise ValueError("Invalid Mix: no components (give weights, e.g. adam=0.5, sgd=0.5)")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"Invalid weight for mix component {name}: {weight!r} (must be a finite number >= 0)")
    if not any(weights.values()):
        raise ValueError(f"Invalid Mix weights: all zero ({', '.join(map(str, weights))}); at least one must be > 0")


def component_name(component: Any) -> str:
    """A component's one name: a kind, a registered optimizer name or ``module:Class``."""
    if isinstance(component, str) and component in KINDS:
        return component
    if isinstance(component, type) and issubclass(component, Optimizer):
        component = f"{component.__module__}:{component.__qualname__}"
    if not isinstance(component, str):
        raise ValueError(f"Invalid mix component {component!r} (a name such as adam, or a torch.optim.Optimizer)")
    try:
        name = resolve_optimizer(component)
    except ValueError as error:
        raise ValueError(f"Invalid mix component {component!r}: {error}") from None
    if name in ("mix", "mas"):
        raise ValueError(f"Invalid mix component {name}: mix adam and sgd instead (mas is Mix(adam=..., sgd=...))")
    return name


def _resolved(group: dict[str, Any]) -> dict[str, Any]:
    """The group with its weights checked and named, and each product component's settings in full."""
    weights = {component_name(k): v for k, v in group["weights"].items()}
    if len(weights) != len(group["weights"]):
        raise ValueError(f"Invalid Mix weights: a component is named twice ({', '.join(map(str, group['weights']))})")
    check_weights(weights)
    own = {component_name(k): dict(v) for k, v in group["components"].items()}
    unknown = sorted(set(own) - set(weights))
    if unknown:
        raise ValueError(f"Invalid Mix components: settings for {', '.join(unknown)}, which has no weight")
    shared = {k: v for k, v in group["shared"].items() if v is not None}
    for k in _FLOATS:
        if k in shared and not shared[k] >= 0:
            raise ValueError(f"Invalid {k} value: {shared[k]} (must be >= 0)")
    if group.get("fused") and group.get("foreach"):
        raise ValueError("Invalid options: fused=True and foreach=True cannot both be set")
    if not group["lr"] >= 0 or isinstance(group["lr"], torch.Tensor):
        raise ValueError(f"Invalid learning rate: {group['lr']} (must be a float >= 0)")
    components = {}
    for name in sorted(weights, key=_order):
        if name not in KINDS:
            components[name] = own.get(name, {})
            continue
        defaults = mix_kinds.DEFAULTS[name]
        bad = sorted(set(own.get(name, {})) - set(defaults) - {"lr"})
        if bad:
            raise ValueError(f"Invalid setting {bad[0]!r} for mix component {name} (valid: lr, {', '.join(defaults)})")
        hp = {**defaults, **{k: v for k, v in shared.items() if k in defaults}, **own.get(name, {})}
        mix_kinds.validate(name, hp)
        components[name] = hp
    return {**group, "weights": {name: weights[name] for name in components}, "components": components}


def _order(name: str) -> tuple[int, str]:
    return (KINDS.index(name), "") if name in KINDS else (len(KINDS), name)


def _product_names(group: dict[str, Any]) -> list[str]:
    return [name for name in group["weights"] if name in KINDS]


def _linear_names(group: dict[str, Any]) -> list[str]:
    return [name for name in group["weights"] if name not in KINDS]


def _linear_hparams(name: str, accepted: Iterable[str], group: dict[str, Any]) -> dict[str, Any]:
    """A linear component's settings in ``group``: lr, the shared ones it takes, then its own."""
    shared = {k: v for k, v in group["shared"].items() if v is not None and k in accepted}
    return {"lr": group["lr"], **shared, **group["components"][name]}


def _build_linear(name: str, groups: list[dict[str, Any]], scratch: dict) -> Optimizer:
    accepted = hyperparameter_names(name)
    inner_groups = [{"params": [scratch[p] for p in g["params"]], **_linear_hparams(name, accepted, g)} for g in groups]
    try:
        return optimizer_class(name)(inner_groups)
    except (TypeError, ValueError) as error:
        raise ValueError(f"Invalid settings for mix component {name}: {one_line(error, limit=None)}") from None


def _scalars(state_dict: dict[str, Any]) -> dict[Any, list[tuple[str, str, torch.Tensor]]]:
    """The saved steps and NAdam's mu_product, per parameter id as (component, key, value), before torch casts them."""
    out: dict[Any, list[tuple[str, str, torch.Tensor]]] = {}
    for param_id, state in state_dict["state"].items():
        for kind, values in state.items():
            if isinstance(values, dict):
                out.setdefault(param_id, []).extend(
                    (kind, k, v) for k, v in values.items() if k in ("step", "mu_product"))
    return out


OPTIMIZERS["mix"] = Mix  # the registry's last name (see masbench.optim.registry)
