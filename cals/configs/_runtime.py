# Shared runtime for CALS configs (mmengine). Data roots, metainfo and the number
# of keypoints are filled in by cals.model.config from the keypoint schema.
default_scope = 'mmpose'
log_level = 'ERROR'
load_from = None
resume = False
randomness = dict(seed=0)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=-1, save_last=False),
    sampler_seed=dict(type='DistSamplerSeedHook'))
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_evaluator = None
