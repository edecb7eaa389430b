"""The skew comparison itself: equal vectors pass, a feature computed differently is named."""

import numpy as np
import pandas as pd

from pipelines.platform.lib.online import compare_vectors


def test_equal_vectors_and_shared_missing_values_do_not_differ():
    frame = pd.DataFrame({"carrier": ["UA", None], "distance": [1400.0, np.nan]})
    assert compare_vectors(frame, frame.copy()) == {}


def test_a_feature_computed_differently_is_named_with_its_row_count():
    online = pd.DataFrame({"carrier": ["UA", "DL"], "hour": [5.0, 6.0], "temp": [1.0, np.nan]})
    offline = online.assign(hour=[6.0, 7.0], temp=[1.0, 3.0])
    assert compare_vectors(online, offline) == {"hour": 2, "temp": 1}
