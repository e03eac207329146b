"""Field rules of the contract, checked directly on the validation functions."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from imagecloud.errors import InvalidIdentifier, InvalidParameter
from imagecloud.service import validation as check

D = dt.date
MAX_DAYS = 366 * 5


class TestDateRange:
    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            ("2023", "2023", (D(2023, 1, 1), D(2023, 12, 31))),
            ("202302", "202302", (D(2023, 2, 1), D(2023, 2, 28))),
            ("202402", "202402", (D(2024, 2, 1), D(2024, 2, 29))),  # leap year
            ("190002", "190002", (D(1900, 2, 1), D(1900, 2, 28))),  # divisible by 100: not leap
            ("200002", "200002", (D(2000, 2, 1), D(2000, 2, 29))),  # divisible by 400: leap
            ("202304", "202304", (D(2023, 4, 1), D(2023, 4, 30))),
            ("20230115", "20230115", (D(2023, 1, 15), D(2023, 1, 15))),
            ("2023", "202403", (D(2023, 1, 1), D(2024, 3, 31))),
            ("20231231", "2024", (D(2023, 12, 31), D(2024, 12, 31))),
            ("20240229", "20240229", (D(2024, 2, 29), D(2024, 2, 29))),
        ],
    )
    def test_short_start_is_first_day_short_end_is_last_day(self, start, end, expected):
        assert check.date_range(start, end, MAX_DAYS) == expected

    @pytest.mark.parametrize(
        "bad",
        [
            "20231301",  # month 13
            "20230230",  # no such day
            "20230229",  # 2023 is not a leap year
            "19000229",  # neither is 1900
            "20230100",
            "202313",
            "202300",
            "2023-01-01",
            "2023/01",
            "23",
            "20231",
            "2023010",
            "202301011",
            " 2023",
            "2023\n",
            "abcd",
            "٢٠٢٣",  # Arabic-Indic digits are digits to Python's int(), not to the contract
        ],
    )
    def test_malformed_dates_are_20002(self, bad):
        with pytest.raises(InvalidParameter):
            check.date_range(bad, "2024", MAX_DAYS)
        with pytest.raises(InvalidParameter):
            check.date_range("2020", bad, MAX_DAYS)

    @pytest.mark.parametrize(("start", "end"), [(None, "2023"), ("2023", None), ("", "2023"), ("2023", "")])
    def test_missing_bound_is_20002(self, start, end):
        with pytest.raises(InvalidParameter):
            check.date_range(start, end, MAX_DAYS)

    def test_start_after_end_is_20002(self):
        with pytest.raises(InvalidParameter):
            check.date_range("20230102", "20230101", MAX_DAYS)
        with pytest.raises(InvalidParameter):
            check.date_range("2024", "2023", MAX_DAYS)

    def test_same_short_month_both_ends_is_not_reversed(self):
        # A start of 202303 is March 1st and an end of 202303 is March 31st: never "start after end".
        assert check.date_range("202303", "202303", MAX_DAYS) == (D(2023, 3, 1), D(2023, 3, 31))

    def test_range_longer_than_the_limit_is_20002(self):
        assert check.date_range("2023", "2023", 365) == (D(2023, 1, 1), D(2023, 12, 31))
        with pytest.raises(InvalidParameter):
            check.date_range("2024", "2024", 365)  # 366 days
        with pytest.raises(InvalidParameter):
            check.date_range("2000", "2099", MAX_DAYS)


class TestIdentifier:
    @pytest.mark.parametrize(
        "good", ["abc", "a" * 50, "Poster_01.v2", "x@y.z", "___", "...", "123", "A1b2C3"]
    )
    def test_accepted(self, good):
        assert check.identifier(good) == good

    @pytest.mark.parametrize(
        "bad",
        [
            "ab",  # 2 characters
            "a" * 51,
            "",
            "has space",
            "tab\there",
            "line\nbreak",
            "abc\n",  # a trailing newline slips through re.match(...$)
            "dash-ed",
            "slash/ed",
            "plus+",
            "café",
            "\uff46\uff55\uff4c\uff4c",  # full-width letters
            "١٢٣",  # Arabic-Indic digits
            "ǅǅǅ",
            "abc\x00",
        ],
    )
    def test_rejected_with_20010(self, bad):
        with pytest.raises(InvalidIdentifier):
            check.identifier(bad)


class TestMetadata:
    def test_absent_or_empty_is_none(self):
        assert check.metadata(None, 1000) is None
        assert check.metadata("", 1000) is None

    @pytest.mark.parametrize(
        "value", ['{"a": 1}', "[1, 2]", '"text"', "3", "null", "true", ' {"spaced" : "kept"} ', '{"ü": "✓"}']
    )
    def test_any_json_document_is_kept_verbatim(self, value):
        assert check.metadata(value, 1000) == value

    @pytest.mark.parametrize(
        "value",
        ["{", "not json", "{'single': 'quotes'}", "NaN", '{"a": NaN}', "Infinity", "[-Infinity]", "{} {}"],
    )
    def test_invalid_json_is_20002(self, value):
        with pytest.raises(InvalidParameter):
            check.metadata(value, 1000)

    def test_size_limit_counts_utf8_bytes(self):
        limit = 64 * 1024
        fits = json.dumps("x" * (limit - 2))
        assert len(fits.encode()) == limit
        assert check.metadata(fits, limit) == fits
        with pytest.raises(InvalidParameter):
            check.metadata(json.dumps("x" * (limit - 1)), limit)
        # 3 bytes per character in UTF-8: fewer characters than the limit, more bytes.
        wide = json.dumps("€" * (limit // 3), ensure_ascii=False)
        assert len(wide) < limit < len(wide.encode())
        with pytest.raises(InvalidParameter):
            check.metadata(wide, limit)

    def test_deeply_nested_json_is_20002_not_a_crash(self):
        with pytest.raises(InvalidParameter):
            check.metadata("[" * 100_000 + "]" * 100_000, 1_000_000)


class TestIntegers:
    def test_default_and_bounds(self):
        assert check.non_negative_int(None, "position", 0) == 0
        assert check.non_negative_int("", "position", 7) == 7
        assert check.non_negative_int("0", "position", 7) == 0
        assert check.positive_int("1000", "count", 100, 1000) == 1000

    @pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "1e3", " 1", "+1", "\uff11", "9" * 40])
    def test_not_a_non_negative_integer_is_20002(self, bad):
        with pytest.raises(InvalidParameter):
            check.non_negative_int(bad, "position", 0)

    @pytest.mark.parametrize("bad", ["0", "1001"])
    def test_out_of_range_is_20002(self, bad):
        with pytest.raises(InvalidParameter):
            check.positive_int(bad, "count", 100, 1000)


class TestNames:
    @pytest.mark.parametrize("good", ["a", "A-b_c.d@e", "x" * 64])
    def test_channel_names(self, good):
        assert check.new_channel_name(good) == good

    @pytest.mark.parametrize("bad", ["", "x" * 65, "with space", "slash/", "ümlaut", "new\nline"])
    def test_bad_channel_names(self, bad):
        with pytest.raises(InvalidParameter):
            check.new_channel_name(bad)
