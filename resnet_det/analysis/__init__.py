"""The paper's experiments as library functions: the degradation study (Figure 6) and layer
responses (Figure 7)."""
from .degradation import (
    DEFAULT_MODELS,
    StudyData,
    StudyRecipe,
    load_study_data,
    load_study_model,
    parse_model_spec,
    plot_error_curves,
    run_degradation_study,
    train_model,
)
from .layer_responses import (
    init_layer_responses,
    layer_responses,
    plot_layer_responses,
    residual_blocks,
    study_layer_responses,
)

__all__ = [
    "DEFAULT_MODELS",
    "StudyData",
    "StudyRecipe",
    "load_study_data",
    "load_study_model",
    "parse_model_spec",
    "plot_error_curves",
    "run_degradation_study",
    "train_model",
    "init_layer_responses",
    "layer_responses",
    "study_layer_responses",
    "plot_layer_responses",
    "residual_blocks",
]
