import pandas as pd

from pipelines.platform.lib.plots import markdown_image, training_set_summary


def test_training_set_summary_is_a_png_with_a_markdown_wrapper():
    frame = pd.DataFrame(
        {
            "partition_date": ["2013-01-01", "2013-01-01", "2013-01-02"],
            "label": [0, 1, 1],
            "f1": [1.0, None, 2.0],
            "f2": [None, None, 1.0],
        }
    )
    png = training_set_summary(frame, ["f1", "f2"], "partition_date")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert markdown_image(png, "x").startswith("![x](data:image/png;base64,iVBOR")
