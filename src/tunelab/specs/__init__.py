"""Light registries: what each method, stage and continual penalty is (name, description, the keys it reads,
capabilities), importable without torch. Validating a config reads only these.

- tunelab.specs.methods.METHOD_SPECS, tunelab.specs.stages.STAGE_SPECS, tunelab.specs.continual.PENALTY_SPECS
- tunelab.specs.support: which method trains with which stage, which penalty runs with which stage
"""
