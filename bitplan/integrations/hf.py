"""Train against a plan with transformers' ``Trainer``: ``prepare`` the model, add ``BitplanCallback``.

``prepare(model, plan)`` applies the plan (``bitplan.apply``) with the stochastic-rounding seed of
this process's rank (``RANK``, as ``bitplan train`` seeds it under DDP and FSDP2) and makes the
quantizer state part of the model's ``state_dict``: the activation observers' running ranges
become persistent buffers, so the Trainer's checkpoints, ``save_pretrained`` and accelerate's FSDP2
loading (which rebuilds a model from its state dict) keep them. ``BitplanCallback`` adds the plan's
size and BitOPs to every log line.

Example (docs/training.md runs it)::

    model = prepare(AutoModelForCausalLM.from_pretrained(DIR), "plan.json")
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[BitplanCallback("plan.json")])
    trainer.train()
"""

from __future__ import annotations

import os
from torch import nn

from bitplan.plan import BitPlan, as_plan
from bitplan.qat import apply
from bitplan.quant import ActivationObserver
from bitplan.train.loop import sr_seed

try:
    from transformers import TrainerCallback
except ImportError as error:  # an optional integration: say what to install
    raise ImportError("bitplan.integrations.hf needs transformers and accelerate: pip install 'bitplan[hf]'") from error


def prepare(
    model: nn.Module, plan: BitPlan | str | os.PathLike, example_inputs: tuple | None = None, *, seed: int = 0, **options
) -> nn.Module:
    """Quantize ``model`` as ``plan`` says, ready for ``Trainer`` (or accelerate, or your own loop).

    Args:
        model: A transformers model (any ``nn.Module`` works) with the plan's architecture.
        plan: A ``BitPlan`` or a plan file.
        example_inputs: One forward's positional inputs, to check the plan fits (None: the plan's spec's).
        seed: The run's seed; the rounding stream is ``sr_seed(seed, RANK)``, distinct per rank.
        **options: ``forward_quant``, ``gradient_samples``: as ``bitplan.apply``.

    Returns:
        ``model`` itself, quantized, its activation ranges in ``state_dict``.

    Raises:
        PlanError: The plan was made for another architecture.
    """
    apply(model, as_plan(plan), example_inputs, seed=sr_seed(seed, int(os.environ.get("RANK", "0"))), **options)
    for observer in model.modules():
        if isinstance(observer, ActivationObserver):
            for name, buffer in list(observer.named_buffers(recurse=False)):
                observer.register_buffer(name, buffer, persistent=True)
    return model


class BitplanCallback(TrainerCallback):
    """Adds the plan's MBit and BitOPs (and their ratios to fp32) to every log line of the Trainer.

    The values are fixed by the plan; logging them with the loss puts the cost next to the quality
    in every tracker (``trainer.state.log_history`` included).
    """

    def __init__(self, plan: BitPlan | str | os.PathLike) -> None:
        estimates = as_plan(plan).estimates
        self.values = {
            "bitplan/mbit": estimates.mbit,
            "bitplan/mbit_fp32": estimates.mbit_fp32,
            "bitplan/gbitops_training": estimates.bitops_training / 1e9,
            "bitplan/bitops_training_ratio_fp32": estimates.bitops_training_ratio_fp32,
        }

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 (transformers' signature)
        """Add the values to this log line and to its copy in ``state.log_history``.

        Trackers (``report_to``) are callbacks registered before the user's, so they see the values
        only when this callback is moved first: ``trainer.callback_handler.callbacks.insert(0, callback)``.
        """
        if logs is not None:
            logs.update(self.values)
        if state.log_history:
            state.log_history[-1].update(self.values)
        return control
