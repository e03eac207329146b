"""Statistics: one count per successful FindImage, by UTC day, with yyyy / yyyyMM / yyyyMMdd ranges."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from imagecloud.storage import Channel, MatchCount
from tests.api import images
from tests.api.helpers import add_ok, find, find_in, seed_rows
from tests.server import Account, ServerProcess


def stats(server: ServerProcess, account: Account, start: str, end: str, **fields: Any) -> dict[str, Any]:
    data = {"username": account.username, "secretkey": account.secretkey, "startdate": start, "enddate": end}
    return server.call("Statistics", {**data, **fields})


def records(
    server: ServerProcess, account: Account, start: str, end: str, **fields: Any
) -> list[dict[str, Any]]:
    body = stats(server, account, start, end, **fields)
    assert body["returncode"] == 0, body
    result: list[dict[str, Any]] = body["records"]
    return result


def insert_counts(server: ServerProcess, rows: list[tuple[str, str, str, int]]) -> None:
    """(yyyyMMdd, channel, identifier, count) rows for past days, straight into the real database."""
    with server.operator.db.session() as session:
        ids = {name: id_ for id_, name in session.query(Channel.id, Channel.name)}
        for day, channel, identifier, count in rows:
            date = dt.datetime.strptime(day, "%Y%m%d").date()
            session.add(MatchCount(day=date, channel_id=ids[channel], identifier=identifier, count=count))


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d")


class TestCounting:
    def test_each_successful_find_counts_once_today(
        self, server, account, target_jpeg, target_photo, unrelated_photo
    ):
        add_ok(server, account, "poster", target_jpeg)
        day = today()
        assert records(server, account, day, day) == []
        for _ in range(3):
            assert find_in(server, account, target_photo)["identifier"] == "poster"
        find(server, account, target_photo)  # without channel: counts as well
        assert "identifier" not in find_in(server, account, unrelated_photo)  # no match: not counted
        assert find_in(server, account, b"garbage")["returncode"] == 20007  # failure: not counted
        assert records(server, account, day, day) == [{"date": day, "channel": account.channel, "count": 4}]
        assert records(server, account, day, day, channel=account.channel) == [
            {"date": day, "identifier": "poster", "count": 4}
        ]
        body = stats(server, account, day, day, channel=account.channel, identifier="poster")
        assert body["username"] == account.username
        assert body["channel"] == account.channel
        assert body["records"] == [{"date": day, "identifier": "poster", "count": 4}]

    def test_maxresults_counts_only_the_best(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg)
        find_in(server, account, target_photo, maxresults="5")
        assert records(server, account, today(), today(), channel=account.channel)[0]["count"] == 1

    def test_removed_target_keeps_its_history(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg)
        find_in(server, account, target_photo)
        server.call("RemoveImage", account.auth(identifier="poster"))
        assert records(server, account, today(), today(), channel=account.channel) == [
            {"date": today(), "identifier": "poster", "count": 1}
        ]


class TestRanges:
    @pytest.fixture
    def history(self, server: ServerProcess, account: Account) -> Account:
        other = f"{account.channel}-2"
        server.operator.create_channel(other, account.username)
        insert_counts(
            server,
            [
                ("20221231", account.channel, "aaa", 1),
                ("20230101", account.channel, "bbb", 2),
                ("20230101", account.channel, "Abc", 3),
                ("20230101", other, "zzz", 4),
                ("20230131", account.channel, "aaa", 5),
                ("20230201", account.channel, "aaa", 6),
                ("20240229", account.channel, "aaa", 7),
                ("20231231", account.channel, "aaa", 8),
                ("20230615", account.channel, "zero", 0),
            ],
        )
        seed_rows(server, account, ["aaa"])
        return account

    def test_year(self, server, history):
        assert [r["date"] for r in records(server, history, "2023", "2023", channel=history.channel)] == [
            "20230101",
            "20230101",
            "20230131",
            "20230201",
            "20231231",
        ]

    def test_month_short_end_is_last_day(self, server, history):
        rows = records(server, history, "202301", "202301", channel=history.channel)
        assert [(r["date"], r["count"]) for r in rows] == [("20230101", 3), ("20230101", 2), ("20230131", 5)]

    def test_leap_february(self, server, history):
        assert [r["date"] for r in records(server, history, "202402", "202402", channel=history.channel)] == [
            "20240229"
        ]

    def test_days_are_inclusive(self, server, history):
        rows = records(server, history, "20221231", "20230101", channel=history.channel)
        assert [(r["date"], r["identifier"]) for r in rows] == [
            ("20221231", "aaa"),
            ("20230101", "Abc"),
            ("20230101", "bbb"),
        ]

    def test_mixed_lengths(self, server, history):
        rows = records(server, history, "20230131", "202302", channel=history.channel)
        assert [r["date"] for r in rows] == ["20230131", "20230201"]

    def test_per_channel_ordered_by_date_then_channel(self, server, history):
        second = f"{history.channel}-2"
        assert records(server, history, "20230101", "20230101") == [
            {"date": "20230101", "channel": history.channel, "count": 5},
            {"date": "20230101", "channel": second, "count": 4},
        ]

    def test_one_identifier(self, server, history):
        rows = records(server, history, "2022", "2024", channel=history.channel, identifier="aaa")
        assert [(r["date"], r["count"]) for r in rows] == [
            ("20221231", 1),
            ("20230131", 5),
            ("20230201", 6),
            ("20231231", 8),
            ("20240229", 7),
        ]

    def test_zero_counts_are_left_out(self, server, history):
        assert records(server, history, "20230615", "20230615", channel=history.channel) == []
        assert records(server, history, "20230615", "20230615") == []

    def test_identifier_without_a_target_row_is_20014_even_with_history(self, server, history):
        # "bbb" has counts but no target (removed): asked for by identifier, it does not exist.
        body = stats(server, history, "2023", "2023", channel=history.channel, identifier="bbb")
        assert body["returncode"] == 20014


class TestCodes:
    @pytest.mark.parametrize(
        ("start", "end"),
        [
            ("20231301", "2024"),
            ("2023-01-01", "2024"),
            ("202313", "2024"),
            ("2023", "20230230"),
            ("20240102", "20240101"),
            ("2024", "2023"),
            ("", "2023"),
            ("23", "2023"),
            ("2000", "2099"),
        ],
    )
    def test_bad_dates_are_20002(self, server, account, start, end):
        assert stats(server, account, start, end)["returncode"] == 20002

    def test_missing_dates_are_20002(self, server, account):
        data = {"username": account.username, "secretkey": account.secretkey}
        assert server.call("Statistics", data)["returncode"] == 20002

    def test_precedence(self, server, account, other_account, target_jpeg):
        add_ok(server, account, "poster", target_jpeg)
        cases = [
            (20001, {"secretkey": "wrong", "startdate": "bad"}),
            (20002, {"channel": "no-such-channel", "startdate": "2023-01-01"}),
            (20002, {"identifier": "poster"}),  # identifier needs channel
            (20003, {"channel": "no-such-channel"}),
            (20004, {"channel": other_account.channel}),
            (20004, {"channel": other_account.channel, "identifier": "x"}),
            (20010, {"channel": account.channel, "identifier": "x"}),
            (20014, {"channel": account.channel, "identifier": "missing"}),
        ]
        for code, fields in cases:
            body = stats(server, account, "2023", "2023", **fields)
            assert body["returncode"] == code, (fields, body)


def searches(server: ServerProcess, account: Account, **fields: Any) -> list[dict[str, Any]]:
    body = stats(server, account, today(), today(), **fields)
    assert body["returncode"] == 0, body
    result: list[dict[str, Any]] = body["searches"]
    return result


class TestSearches:
    """``searches`` (extension): FindImage calls answered 0 per day and channel searched, and misses."""

    def test_counts_and_misses_per_channel_searched(
        self, server, account, target_jpeg, target_photo, unrelated_photo
    ):
        add_ok(server, account, "poster", target_jpeg)
        assert searches(server, account) == []
        for photo in (target_photo, target_photo, unrelated_photo):
            assert find_in(server, account, photo)["returncode"] == 0
        for photo in (target_photo, unrelated_photo, unrelated_photo):
            assert find(server, account, photo)["returncode"] == 0  # no channel: counted under ""
        assert searches(server, account) == [
            {"date": today(), "channel": "", "count": 3, "nomatch": 2},
            {"date": today(), "channel": account.channel, "count": 3, "nomatch": 1},
        ]

    def test_the_channel_filter_applies(self, server, account, target_jpeg, target_photo):
        add_ok(server, account, "poster", target_jpeg)
        find_in(server, account, target_photo)
        find(server, account, target_photo)
        assert searches(server, account, channel=account.channel) == [
            {"date": today(), "channel": account.channel, "count": 1, "nomatch": 0}
        ]
        body = stats(server, account, today(), today(), channel=account.channel, identifier="poster")
        assert "searches" not in body

    def test_only_answered_searches_count(self, server, account, target_photo):
        assert find_in(server, account, images.blank())["returncode"] == 20013
        wrong = {"username": account.username, "secretkey": "wrong", "channel": account.channel}
        assert (
            server.call("FindImage", wrong, files={"image": ("p.jpg", target_photo, "image/jpeg")})[
                "returncode"
            ]
            == 20001
        )
        assert searches(server, account) == []

    def test_app_key_searches_count_for_the_owner(self, server, account, other_account, target_photo):
        created = server.call(
            "CreateAppKey", {"username": account.username, "secretkey": account.secretkey, "name": "app"}
        )
        app = Account(account.username, created["appkey"], account.channel)
        find_in(server, app, target_photo)
        assert searches(server, account) == [
            {"date": today(), "channel": account.channel, "count": 1, "nomatch": 1}
        ]
        assert searches(server, other_account) == []

    def test_range_and_deleted_channels(self, server, account, target_photo):
        find_in(server, account, target_photo)
        yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y%m%d")
        assert stats(server, account, "2025", yesterday)["searches"] == []
        creds = {"username": account.username, "secretkey": account.secretkey}
        assert server.call("DeleteChannel", {**creds, "channel": account.channel})["returncode"] == 0
        assert searches(server, account) == []
