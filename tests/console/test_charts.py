"""The SVG charts (cloud/console/charts.py, templates/_charts.html; D28-H): the drawn bars match
the numbers (heights in proportion, on one baseline, the same numbers in the hidden table), and
the console's Today page draws its charts from the day's attendance and meals."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from api_world import PASSWORD, World
from console_helpers import populate_today, sign_in
from fastapi.testclient import TestClient

from cloud.console import charts
from cloud.console.web import env

SVG = "{http://www.w3.org/2000/svg}"


def _draw(chart: charts.Chart) -> ET.Element:
    html = env.from_string(
        '{% from "_charts.html" import bar_chart %}{{ bar_chart(chart, "c") }}'
    ).render(chart=chart, locale="en")
    return ET.fromstring(html)


def test_the_bars_match_the_numbers() -> None:
    values = [3, 0, 12, 7, 5]
    chart = charts.bar_chart(
        "Pupils by hour", "Hour", "Pupils",
        [(f"{h:02d}", v, str(v)) for h, v in zip(range(7, 12), values, strict=True)],
        compare_header="Last month", compare=[(4, "4"), None, (10, "10"), (2, "2"), (6, "6")],
    )  # fmt: skip
    fig = _draw(chart)
    svg = fig.find(f"{SVG}svg")
    assert svg is not None and svg.get("role") == "img"
    assert svg.find(f"{SVG}title").text == "Pupils by hour"  # type: ignore[union-attr]
    bars = svg.findall(f"{SVG}rect")
    assert [float(b.get("data-value") or -1) for b in bars] == values
    heights = [float(b.get("height") or -1) for b in bars]
    bottoms = {round(float(b.get("y") or 0) + h, 1) for b, h in zip(bars, heights, strict=True)}
    assert len(bottoms) == 1  # one baseline
    # heights in proportion to the values (to the SVG's 0.1 precision)
    unit = heights[2] / 12
    for v, h in zip(values, heights, strict=True):
        assert abs(h - v * unit) < 0.15, (v, h)
    # the axis reaches the largest value in 1-2-5 steps: 12 -> 15 in steps of 5
    assert charts.nice_top(12) == (15.0, 5.0)
    assert [t.text for t in chart.ticks] == ["0", "5", "10", "15"]
    assert heights[2] == max(heights) and heights[1] == 0
    # the other series: one dot per value it has, at the same scale
    dots = svg.findall(f"{SVG}circle")
    assert [float(d.get("data-value") or -1) for d in dots] == [4, 10, 2, 6]
    base = bottoms.pop()
    for d in dots:
        assert abs(base - float(d.get("cy") or 0) - float(d.get("data-value") or 0) * unit) < 0.15
    # the hidden table says the same
    rows = [[c.text or "" for c in tr] for tr in fig.iter("tr")][1:]
    assert rows == [["07", "3", "4"], ["08", "0", ""], ["09", "12", "10"], ["10", "7", "2"],
                    ["11", "5", "6"]]  # fmt: skip


def test_an_axis_that_does_not_start_at_zero() -> None:
    chart = charts.bar_chart("Arrival", "Day", "At", [("1", 8.5, "08:30"), ("2", 7.0, "—")],
                             floor=7.0)  # fmt: skip
    assert chart.bars[1].height == 0 and chart.bars[0].height > 0
    assert chart.ticks[0].text == "7"


def test_today_draws_its_charts_from_the_day(
    client: TestClient, world: World, database_url: str
) -> None:
    populate_today(database_url, world.ids)  # Alice in at 08:10, Amir at 08:47; one meal
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    r = client.get("/today")
    assert r.status_code == 200
    hours = r.text.split('id="chart-hours"')[1].split("</figure>")[0]
    assert re.findall(r'data-label="08" data-value="(\d+)"', hours) == ["2"]
    assert re.findall(r'data-label="09" data-value="(\d+)"', hours) == ["0"]
    meals = r.text.split('id="chart-meals"')[1].split("</figure>")[0]
    assert sum(int(v) for v in re.findall(r'<rect class="bar"[^>]*data-value="(\d+)"', meals)) == 1
    assert 'role="img"' in meals and '<div class="sr-only"><table>' in meals
    # the htmx refresh selects #today: the charts are inside it
    today = r.text.split('id="today"')[1]
    assert 'id="chart-arrivals"' in today
    kk = client.get("/today", headers={"Accept-Language": "kk"})
    assert kk.status_code == 200
