from django import template

register = template.Library()


@register.filter
def page_ranges(pages) -> str:
    """[1, 2, 3, 7, 9, 10] → "1–3, 7, 9–10"."""
    numbers = sorted({int(p) for p in pages or []})
    ranges: list[str] = []
    start = previous = None
    for number in numbers + [None]:
        if start is not None and (number is None or number != previous + 1):
            ranges.append(str(start) if start == previous else f"{start}–{previous}")
            start = None
        if number is not None and start is None:
            start = number
        previous = number
    return ", ".join(ranges)
