"""MAS written from the issue's update rule in plain Python floats: no torch, one float at a time."""

from __future__ import annotations

import math


class ReferenceMAS:
    def __init__(self, n, *, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, momentum=0.0,
                 dampening=0.0, nesterov=False, lambda_adam=0.5, lambda_sgd=0.5, bias_correction="step"):
        self.h = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                      momentum=momentum, dampening=dampening, nesterov=nesterov, lambda_adam=lambda_adam,
                      lambda_sgd=lambda_sgd, bias_correction=bias_correction)
        self.t = 0
        self.m, self.v, self.vmax, self.buf = [0.0] * n, [0.0] * n, [0.0] * n, [None] * n

    def step(self, p, g):
        h = self.h
        self.t += 1
        if h["bias_correction"] == "step":
            bc1, bc2 = 1 - h["beta1"] ** self.t, 1 - h["beta2"] ** self.t
        else:
            bc1, bc2 = 1 - h["beta1"], 1 - h["beta2"]
        eta_a = h["lr"] / bc1
        out = []
        for i in range(len(p)):
            gh = g[i] + h["weight_decay"] * p[i]
            self.m[i] = h["beta1"] * self.m[i] + (1 - h["beta1"]) * gh
            self.v[i] = h["beta2"] * self.v[i] + (1 - h["beta2"]) * gh * gh
            self.vmax[i] = max(self.vmax[i], self.v[i])
            second = self.vmax[i] if h["amsgrad"] else self.v[i]
            d_a = self.m[i] / (math.sqrt(second) / math.sqrt(bc2) + h["eps"])
            mu = h["momentum"]
            if mu != 0:
                self.buf[i] = gh if self.buf[i] is None else mu * self.buf[i] + (1 - h["dampening"]) * gh
                d_s = gh + mu * self.buf[i] if h["nesterov"] else self.buf[i]
            else:
                d_s = gh
            lam_a, lam_s = h["lambda_adam"], h["lambda_sgd"]
            out.append(p[i] - (lam_s * h["lr"] + lam_a * eta_a) * (lam_s * d_s + lam_a * d_a))
        return out


def reference_mas(p0, grads, *, beta1, beta2, **kwargs):
    """Apply ReferenceMAS to ``p0`` with a fixed list of gradients."""
    opt = ReferenceMAS(len(p0), beta1=beta1, beta2=beta2, **kwargs)
    p = list(p0)
    for g in grads:
        p = opt.step(p, g)
    return p
