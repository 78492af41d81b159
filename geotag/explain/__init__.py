"""Explaining a trained run: class activation maps and the shortcut audit's measurements.

    cam        compute_cams: Grad-CAM and friends (pytorch-grad-cam) for geotag's timm
               models, with the target layer picked per architecture (CNN, ViT, Swin)
    heat       how much of a map's heat lies in a band of the image (the bottom strip
               where photographer names are printed), and dataset-wide summaries of it
    overlay    heatmaps over photos, contact sheets and the mean map, as PNG files
    metadata   whether the images' copyright strings alone predict the cell

Quiet library code: nothing prints; the ``explain`` stage writes and reports.
"""
