"""Training the digital twin's pose network and exporting it as a DeepLabCut-Live model folder.

The pieces, each with one job:

- ``dataset``: frames of the twin mouse rendered from every camera, labelled with the projected
  body parts, cut into crops for training or kept whole for evaluation;
- ``targets``: DeepLabCut's training targets (score-map disks and location refinement) for them;
- ``network``: the small fully convolutional net (stride 8), built with Keras;
- ``train``: the seeded training loop;
- ``export``: the frozen TensorFlow 1 graph and ``pose_cfg.yaml`` that ``dlclive`` loads;
- ``evaluate``: accuracy and speed of an exported folder, measured through ``dlclive`` itself.

Only the training side imports TensorFlow and the twin; the runtime side is ``tracking.pose``.
"""
