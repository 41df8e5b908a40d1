"""Front ends: each turns a model into a ``ModelProfile`` with the same verb, ``trace``.

- ``bitplan.frontends.torch.trace(model, example_inputs)``: a PyTorch module, traced on meta tensors
  (``bitplan.profile_model`` is this function);
- ``bitplan.frontends.onnx.trace(path)``: an ONNX file, from its graph and ONNX shape inference
  (imports ``onnx`` only when called).

Both feed one ``ProfileBuilder`` (naming, shared weights, the coverage ledger); the torch tracers share
one op table (``ops.OPS``) with ``bitplan.apply``. Layout: docs/concepts.md, "Front ends".
"""
