"""CSV downloads for admins: UTF-8 with a BOM (spreadsheet programs then read the Chinese), streamed, times in
Asia/Shanghai, and no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from flask import Response, stream_with_context

from shared import clock


def csv_cell(value: Any) -> Any:
    if hasattr(value, "astimezone"):
        return value.astimezone(clock.LOCAL_TZ).isoformat(timespec="seconds")
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # never a formula in someone's spreadsheet
    return "" if value is None else value


def csv_stream(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], header: Sequence[str] | None = None
               ) -> Iterator[str]:
    """The rows as CSV text in chunks of about 64 KB; ``header`` names the columns (default: their keys)."""
    out = io.StringIO()
    writer = csv.writer(out)
    out.write("\ufeff")
    writer.writerow(header or columns)
    for row in rows:
        writer.writerow([csv_cell(row[name]) for name in columns])
        if out.tell() > 64 * 1024:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def csv_attachment(filename: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]],
                   header: Sequence[str] | None = None) -> Response:
    return Response(stream_with_context(csv_stream(columns, rows, header)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
