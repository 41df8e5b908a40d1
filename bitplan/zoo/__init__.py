"""Built-in model zoo: random-init architectures from the seed paper, each with a default example input.

Nothing is ever downloaded. Models are named in specs as ``zoo:NAME?option=value``::

    >>> from bitplan import zoo
    >>> model, (x,) = zoo.build("mobilenet_v2", {"width": "0.5"})
    >>> zoo.info("resnet20").params
    269722
"""

# Importing the model modules registers them.
from bitplan.zoo import cifar_resnets, lstm, mobilenet_v2, resnet50, small_cnns, transformer  # noqa: F401
from bitplan.zoo.configs import ClassifierConfig, LanguageModelConfig, Task, ZooConfig
from bitplan.zoo.registry import ZooInfo, ZooOption, build, catalog, info, names, parse_options, register

__all__ = [
    # building models
    "build",
    "parse_options",
    # describing them
    "names",
    "info",
    "catalog",
    "ZooInfo",
    "ZooOption",
    "Task",
    # adding models
    "register",
    "ZooConfig",
    "ClassifierConfig",
    "LanguageModelConfig",
]
