# Real-use model: RTMPose-m (CSPNeXt-m + SimCC head) at 256x192, the shape of
# mmpose's rtmpose-m_8xb256-420e_coco-256x192 with a fine-tuning schedule.
# Initialise it from the COCO-17 checkpoint below (--init); the 17 body
# channels are copied and the spine channels start fresh.
_base_ = ['./_runtime.py']

coco_checkpoint = ('https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/'
                   'rtmpose-m_simcc-aic-coco_pt-aic-coco_420e-256x192-63eb25f7_20230126.pth')
num_keypoints = 26  # replaced from the schema
input_size = (192, 256)
batch_size = 64
max_epochs = 90
base_lr = 1e-3

train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2,
         end=max_epochs, T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=256)

codec = dict(type='SimCCLabel', input_size=input_size, sigma=(4.9, 5.66),
             simcc_split_ratio=2.0, normalize=False, use_dark=False)
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.67,
                  widen_factor=0.75, out_indices=(4, ), channel_attention=True,
                  norm_cfg=dict(type='BN'), act_cfg=dict(type='SiLU')),
    head=dict(
        type='RTMCCHead', in_channels=768, out_channels=num_keypoints, input_size=input_size,
        in_featuremap_size=tuple(s // 32 for s in input_size), simcc_split_ratio=2.0,
        final_layer_kernel_size=7,
        gau_cfg=dict(hidden_dims=256, s=128, expansion_factor=2, dropout_rate=0.,
                     drop_path=0., act_fn='SiLU', use_rel_bias=False, pos_enc=False),
        loss=dict(type='KLDiscretLoss', use_target_weight=True, beta=10., label_softmax=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, output_heatmaps=True))

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform', scale_factor=[0.6, 1.4], rotate_factor=80),
    dict(type='TopdownAffine', input_size=input_size),
    dict(type='PhotometricDistortion'),
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
    batch_size=batch_size, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_mode='topdown', data_root='', ann_file='',
                 data_prefix=dict(img='images/'), pipeline=train_pipeline))
test_dataloader = dict(batch_size=32, dataset=dict(type='CocoDataset', pipeline=test_pipeline))
