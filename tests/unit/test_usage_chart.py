"""The daily chart's geometry: a round top for the scale, bars inside the chart and in order,
and day labels that stay few enough to be read at phone width."""

from datetime import date, timedelta
from types import SimpleNamespace

import pytest

from portal.web.chart import MAX_LABELS, PLOT_HEIGHT, daily_bars, scale_top


def days(*costs, start=date(2026, 11, 1)):
    return [SimpleNamespace(day=start + timedelta(days=index), count=cost // 10_000, cost=cost)
            for index, cost in enumerate(costs)]


@pytest.mark.parametrize("highest, top", [(0, 1000), (1, 1000), (1000, 1000), (1001, 2000), (2400, 5000),
                                          (9000, 10_000), (12_000, 20_000), (240_000, 250_000), (3_456_789, 5_000_000)])
def test_the_scale_tops_out_at_a_round_number_of_whole_yen(highest, top):
    assert scale_top(highest) == top


def test_the_highest_day_reaches_its_share_of_the_scale_and_an_empty_day_has_no_height():
    chart = daily_bars(days(10_000, 0, 40_000))
    assert chart.top == 50_000
    assert [bar.height for bar in chart.bars] == [PLOT_HEIGHT * 0.2, 0, PLOT_HEIGHT * 0.8]
    assert chart.highest.day == date(2026, 11, 3)


def test_bars_stay_inside_the_chart_in_the_order_of_the_days():
    chart = daily_bars(days(*range(0, 31 * 1000, 1000)))
    edges = [(bar.x, bar.x + bar.width) for bar in chart.bars]
    assert edges[0][0] >= 0 and edges[-1][1] <= 100
    assert all(left[1] <= right[0] for left, right in zip(edges, edges[1:]))


@pytest.mark.parametrize("count", [1, 2, 7, 28, 31, 92, 397])
def test_a_few_days_are_labelled_however_long_the_range(count):
    chart = daily_bars(days(*[1000] * count))
    labelled = [bar for bar in chart.bars if bar.labelled]
    assert 1 <= len(labelled) <= MAX_LABELS
    assert chart.bars[0].labelled
    gaps = {later.x - earlier.x for earlier, later in zip(labelled, labelled[1:])}
    assert max(gaps, default=0) - min(gaps, default=0) < 0.01  # evenly spaced: none crowds its neighbour


def test_a_range_without_usage_has_no_highest_day():
    chart = daily_bars(days(0, 0, 0))
    assert chart.highest is None and chart.top == 1000 and chart.gridlines == []
    assert daily_bars([]).bars == []


def test_labels_at_the_edges_are_aligned_to_them():
    bars = daily_bars(days(*[1000] * 30)).bars
    assert (bars[0].label_anchor, bars[15].label_anchor, bars[-1].label_anchor) == ("start", "middle", "end")
    assert bars[0].label_x == bars[0].x and bars[-1].label_x == bars[-1].x + bars[-1].width
