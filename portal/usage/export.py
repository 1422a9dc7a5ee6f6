"""The CSV of a usage range, streamed: rows are read in keyset batches (each its own short
read transaction, see service.export) and written out batch by batch, so memory stays flat
whatever the range. UTF-8 with a byte-order mark (Excel then reads Japanese right),
a header row in the account's language, Japan-time timestamps, amounts in yen, numbers masked
to their last four digits, and every text cell guarded against formula injection."""

import csv
import io
from collections.abc import Iterable, Iterator

from sqlalchemy.engine import Row

from portal.formats import csv_cell, masked_phone
from portal.usage import rules
from portal.usage.rules import JST, Filters

BATCH = 2000
BOM = "\ufeff".encode()
HEADERS = {
    "en": ["Time (Japan)", "Product", "ID", "Credential", "OTP site", "Recipient", "Country", "Segments", "Seconds",
           "Status", "Cost (yen)", "Tags", "Mode"],
    "ja": ["日時（日本時間）", "種類", "ID", "認証情報", "OTPサイト", "宛先", "国", "セグメント", "秒数",
           "ステータス", "料金（円）", "タグ", "モード"],
}
SENT_BY_CHOTTO = {"en": "Chotto", "ja": "Chotto"}


def filename(filters: Filters) -> str:
    return f"chotto-usage-{filters.start.isoformat()}_{filters.end.isoformat()}.csv"


def yen(milli_yen: int) -> str:
    """12345 milli-yen → "12.345" (exact: no float)."""
    sign = "-" if milli_yen < 0 else ""
    whole, fraction = divmod(abs(milli_yen), 1000)
    return f"{sign}{whole}.{fraction:03d}"


def header(language: str) -> bytes:
    return BOM + _line(HEADERS.get(language, HEADERS["en"]))


def lines(rows: Iterable[Row], *, credentials: dict[int, str], sites: dict[int, str], language: str) -> Iterator[bytes]:
    """The CSV lines of `rows` (oldest first), BATCH rows to a chunk."""
    buffer, writer = _writer()
    count = 0
    chotto = SENT_BY_CHOTTO.get(language, "Chotto")
    for row in rows:
        writer.writerow(_cells(row, credentials, sites, chotto))
        count += 1
        if count % BATCH == 0:
            yield _drain(buffer)
    if buffer.tell():
        yield _drain(buffer)


def _cells(row: Row, credentials: dict[int, str], sites: dict[int, str], chotto: str) -> list[str]:
    credential = credentials.get(row.credential_id, "") if row.credential_id is not None else chotto
    return [row.created_at.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S"), row.product, row.ref,
            csv_cell(credential), csv_cell(sites.get(row.site_id, "") if row.site_id else ""),
            masked_phone(row.recipient), row.country, str(row.segments), str(row.seconds), csv_cell(row.status),
            yen(int(row.cost)), csv_cell(",".join(rules.tags_of(row.tags))), row.mode]


def _writer():
    buffer = io.StringIO()
    return buffer, csv.writer(buffer, lineterminator="\r\n")


def _line(cells: list[str]) -> bytes:
    buffer, writer = _writer()
    writer.writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue().encode()


def _drain(buffer: io.StringIO) -> bytes:
    chunk = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return chunk
