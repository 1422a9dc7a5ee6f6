"""The geometry of the usage page's daily chart, drawn by the template as inline SVG: one bar
per day, its height against a round top of the scale, its place and width in percent of the
chart (so the bars fill any screen while the labels keep their size), and a date label under
every few bars so that they never touch at phone width."""

from dataclasses import dataclass
from datetime import date

PLOT_HEIGHT = 160  # px of the bars' area; the labels have their own rows above and below
MAX_LABELS = 6  # day labels under the bars, evenly spaced: six short dates (11/27) fit a 390 px screen
EDGE = 8  # percent of the width from either side where a label is aligned to the side
MAX_BAR_WIDTH = 6  # percent: a week's bars stay bars, not blocks
STEPS = (1, 2, 2.5, 5)


@dataclass(frozen=True)
class Bar:
    day: date
    count: int
    cost: int
    x: float  # percent of the chart's width
    width: float
    height: float  # px
    labelled: bool

    @property
    def label_anchor(self) -> str:
        """Labels near an edge are aligned to it, so that they do not run off the chart."""
        centre = self.x + self.width / 2
        return "start" if centre < EDGE else "end" if centre > 100 - EDGE else "middle"

    @property
    def label_x(self) -> float:
        return {"start": self.x, "end": self.x + self.width}.get(self.label_anchor, round(self.x + self.width / 2, 3))


@dataclass(frozen=True)
class Bars:
    bars: list[Bar]
    top: int  # the scale's top, in the unit of the costs (milli-yen)
    gridlines: list[tuple[int, float]]  # (value, px from the top of the bars' area)
    highest: Bar | None
    height: int = PLOT_HEIGHT


def scale_top(highest: int, *, unit: int = 1000) -> int:
    """A round number at or above `highest` (a multiple of `unit`: whole yen): 1, 2, 2.5 or 5
    times a power of ten."""
    if highest <= 0:
        return unit
    power = unit
    while True:
        for step in STEPS:
            candidate = int(step * power)
            if candidate >= highest and candidate % unit == 0:
                return candidate
        power *= 10


def daily_bars(days) -> Bars:
    """`days` are the core's DayTotal rows (day, count, cost), one per day of the range."""
    days = list(days)
    if not days:
        return Bars(bars=[], top=scale_top(0), gridlines=[], highest=None)
    top = scale_top(max(day.cost for day in days))
    slot = 100 / len(days)
    width = min(slot * 0.7, MAX_BAR_WIDTH)
    every = max(1, -(-len(days) // MAX_LABELS))
    bars = [Bar(day=day.day, count=day.count, cost=day.cost, x=round(index * slot + (slot - width) / 2, 3),
                width=round(width, 3), height=round(PLOT_HEIGHT * day.cost / top, 1),
                labelled=index % every == 0)
            for index, day in enumerate(days)]
    highest = max(bars, key=lambda bar: bar.cost) if any(bar.cost for bar in bars) else None
    gridlines = [(top * part // 2, PLOT_HEIGHT * (2 - part) / 2) for part in (2, 1)] if highest else []
    return Bars(bars=bars, top=top, gridlines=gridlines, highest=highest)
