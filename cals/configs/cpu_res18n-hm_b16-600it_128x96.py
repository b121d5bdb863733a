# CPU-sized top-down model for tests, demos and laptops: a narrow ResNet-18
# (half width) cut after stage 3 (stride 16: an 8x6 feature map at 128x96 input,
# which learned faster here than the 4x3 map of the full network) and two deconvs
# to 32x24 heatmaps. ~0.16 s per batch-16 iteration on 2 cores (make bench).
_base_ = ['./_runtime.py']

num_keypoints = 26  # replaced from the schema
input_size = (96, 128)  # (w, h)
batch_size = 16
max_iters = 600
base_lr = 2e-3

train_cfg = dict(by_epoch=False, max_iters=max_iters)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=base_lr, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters,
         T_max=max_iters - 50, eta_min=base_lr * 0.02),
]

codec = dict(type='MSRAHeatmap', input_size=input_size, heatmap_size=(24, 32), sigma=1.5,
             unbiased=True)
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18, stem_channels=32, base_channels=32, num_stages=3,
                  strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(2,)),
    head=dict(type='HeatmapHead', in_channels=128, out_channels=num_keypoints,
              deconv_out_channels=(128, 128), deconv_kernel_sizes=(4, 4),
              loss=dict(type='KeypointMSELoss', use_target_weight=True), decoder=codec),
    # shift_heatmap: the mirrored heatmap is one heatmap pixel off after flipping back (MSRA
    # heatmaps are not pixel-centre aligned, as UDP's are); without the shift every flip-tested
    # point was ~3 px left of the truth on 320x240 frames (measured for issue 17)
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True, output_heatmaps=True))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    # rotations up to ±90°: bent and lying people are rare in a pool and a third of what is scored;
    # with ±30° a model fine-tuned on 80 generated frames had lying spine AP 0.02, with ±90° 0.17
    # (test spine AP 0.22 -> 0.29; measured for issue 17)
    dict(type='RandomBBoxTransform', scale_factor=[0.8, 1.2], rotate_factor=90),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PackPoseInputs'),
]
train_dataloader = dict(
    batch_size=batch_size, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_mode='topdown', data_root='', ann_file='',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
# read by mmpose.apis.inference_topdown
test_dataloader = dict(batch_size=32, dataset=dict(type='CocoDataset', pipeline=test_pipeline))
