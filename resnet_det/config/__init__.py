"""Both stages' configs: detection (detectron2's CfgNode plus this plugin's keys) and
classification pretraining (an fvcore CfgNode), merged and checked by one mechanism whose errors
name the file, the key and the allowed values."""
from resnet_det.config.defaults import (
                                        add_resnet_det_config,
                                        get_cfg,
                                        learning_rate_warning,
                                        load_config,
                                        resnet_options,
                                        schedule_warnings,
                                        validate_config,
)
from resnet_det.config.pretraining import get_pretrain_cfg, load_pretrain_cfg
from resnet_det.config.rules import ConfigError, ConfigKeyError, check_rules, merge_config

__all__ = ["ConfigError", "ConfigKeyError", "add_resnet_det_config", "check_rules", "get_cfg", "get_pretrain_cfg",
           "learning_rate_warning", "load_config", "load_pretrain_cfg", "merge_config", "resnet_options",
           "schedule_warnings", "validate_config"]
