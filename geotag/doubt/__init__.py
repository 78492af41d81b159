"""How sure a prediction is: calibrated probabilities, regions with guaranteed coverage,
and a confidence score to answer "not sure" by.

Every setting here is fitted on a fold's inner validation split at training time
(``fold-<k>/calibration.json``), never on the photos eval scores.

    temperature.py  temperature scaling, expected calibration error, reliability bins
    conformal.py    split conformal prediction sets (adaptive prediction sets) and their bound
    confidence.py   confidence scores, selective prediction curves, the inner split's choice
    regions.py      a set of cells as one region: GeoJSON split at the antimeridian, km²
    calibration.py  a fold's calibration: fitted on its inner split, stored, applied
"""
