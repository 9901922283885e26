"""Reading review commands from the new text of a reply, as a manager types them on a phone."""

from __future__ import annotations

from datetime import date

import pytest

from bot.mail.commands import ReadReply, ReplyCommand, read_commands

TODAY = date(2026, 6, 1)  # a Monday


def read(text: str) -> ReadReply:
    return read_commands(text, today=TODAY)


def public(text: str) -> list[dict[str, object]]:
    reply = read(text)
    assert reply.problems == [], reply.problems
    return [c.public() for c in reply.commands]


def approve(*items: int) -> list[dict[str, object]]:
    return [{"action": "approve", "item": n} for n in items]


@pytest.mark.parametrize(("text", "items"), [
    ("approve 1 3", [1, 3]),
    ("approve 1, 3 and 5", [1, 3, 5]),
    ("Approve 1,3", [1, 3]),
    ("approve 1-3", [1, 2, 3]),
    ("approve 1 – 3", [1, 2, 3]),
    ("approve #1 #3", [1, 3]),
    ("approve items 1 and 3", [1, 3]),
    ("approve: 2", [2]),
    ("approved 2", [2]),
    ("APPROVED 2!", [2]),
    ("yes 1", [1]),
    ("ok 1", [1]),
    ("OK 1 please", [1]),
    ("lgtm 1", [1]),
    ("1 approve", [1]),
    ("#2 approve", [2]),
    ("2: approve", [2]),
    ("1 and 3 approve", [1, 3]),
    ("- approve 4", [4]),
    ("please approve 4, thanks", [4]),
    ("Thanks, approved 1 and 3", [1, 3]),
    ("Hi team, approve 5", [5]),
    ("OK, 1 and 3 approved", [1, 3]),
    ("approve １ ３", [1, 3]),  # typed with a Japanese keyboard
])
def test_approve_forms(text: str, items: list[int]) -> None:
    assert public(text) == approve(*items)


@pytest.mark.parametrize(("text", "scope"), [
    ("approve all", "all"),
    ("Approve all!", "all"),
    ("approve all critical", "critical"),
    ("approve all the critical ones", "critical"),
    ("approve all medium", "medium"),
    ("approve all low", "low"),
])
def test_approve_all_and_approve_all_of_a_priority(text: str, scope: str) -> None:
    assert public(text) == [{"action": "approve", "item": None, "scope": scope}]


@pytest.mark.parametrize(("text", "reason", "comment"), [
    ("reject 2 wrong information", "wrong_information", None),
    ("reject 2 wrong info", "wrong_information", None),
    ("reject 2 incorrect", "wrong_information", None),
    ("reject 2 not a gap", "not_a_gap", None),
    ("reject 2 duplicate", "duplicate", None),
    ("reject 2 it's a duplicate of 5", "duplicate", "of 5"),
    ("reject 2 tone", "tone", None),
    ("reject 2 bad tone, too chatty", "tone", "too chatty"),
    ("reject 2 sensitive", "sensitive", None),
    ("reject 2 wrong info: the price is 20 EUR now", "wrong_information",
     "the price is 20 EUR now"),
    ("reject 2 because the price changed", "other", "because the price changed"),
    ("reject 2 wrongly worded", "other", "wrongly worded"),
    ("reject 2", "other", None),
    ("no 2", "other", None),
    ("decline 2", "other", None),
    ("2 no, wrong info", "wrong_information", None),
    ("Rejected 2 - duplicate", "duplicate", None),
])
def test_reject_reasons_and_comments(text: str, reason: str, comment: str | None) -> None:
    expected: dict[str, object] = {"action": "reject", "item": 2, "reason": reason}
    if comment:
        expected["comment"] = comment
    assert public(text) == [expected]


def test_reject_several_items_with_one_reason() -> None:
    assert public("reject 2, 4 duplicate") == [
        {"action": "reject", "item": 2, "reason": "duplicate"},
        {"action": "reject", "item": 4, "reason": "duplicate"}]


def test_edit_with_the_answer_on_the_same_line() -> None:
    assert public("edit 4: We open at 9am on weekdays.") == [
        {"action": "edit", "item": 4, "answer": "We open at 9am on weekdays."}]


def test_edit_with_the_answer_on_the_next_lines_until_the_next_command() -> None:
    text = ("edit 4\nWe open at 9am on weekdays.\n\nOn Saturdays at 10am.\n"
            "approve 1\n")
    assert public(text) == [
        {"action": "edit", "item": 4,
         "answer": "We open at 9am on weekdays.\n\nOn Saturdays at 10am."},
        {"action": "approve", "item": 1}]


@pytest.mark.parametrize("ending", ["\n\nThanks", "\nCheers!", "\n\nThanks,\nAnna",
                                    "\n\nBest regards,\nAnna Smith"])
def test_a_trailing_thanks_is_not_part_of_an_edit(ending: str) -> None:
    [command] = read(f"edit 4:\nReturns are free within 30 days.{ending}").commands
    assert command.answer == "Returns are free within 30 days."


def test_an_answer_after_a_full_width_colon() -> None:
    [command] = read("edit 4：営業時間は9時からです").commands
    assert command.answer == "営業時間は9時からです"


def test_an_answer_that_starts_with_a_number_is_the_answer() -> None:
    [command] = read("edit 4: 24/7 support by chat").commands
    assert (command.item, command.answer) == (4, "24/7 support by chat")


def test_an_answer_with_sentences_that_begin_like_words_of_commands_stays_whole() -> None:
    text = "edit 4:\nNo, refunds take 5 days.\nOk, you can also call us.\nLater orders ship Monday."
    [command] = read(text).commands
    assert command.answer == text.split("\n", 1)[1]


def test_edit_without_an_answer_is_a_problem() -> None:
    reply = read("edit 4\n\nThanks")
    assert reply.commands == []
    assert reply.problems == ['"edit 4": no new answer after edit 4']


@pytest.mark.parametrize(("text", "days"), [
    ("defer 5", 7),
    ("later 5", 7),
    ("defer 5 1w", 7),
    ("defer 5 3d", 3),
    ("defer 5 3 days", 3),
    ("defer 5 for 2 weeks", 14),
    ("defer 5 a week", 7),
    ("snooze 5 tomorrow", 1),
    ("defer 5 next week", 7),
    ("postpone 5 1 month", 30),
])
def test_defer_by_a_period(text: str, days: int) -> None:
    assert public(text) == [{"action": "defer", "item": 5, "days": days}]


@pytest.mark.parametrize(("text", "until"), [
    ("defer 5 2026-12-24", "2026-12-24"),
    ("defer 5 until 24 Dec", "2026-12-24"),
    ("defer 5 until Dec 24", "2026-12-24"),
    ("defer 5 till 24th December 2026", "2026-12-24"),
    ("defer 5 24.12.", "2026-12-24"),
    ("defer 5 until 15 Jan", "2027-01-15"),  # already past this year: the next one
    ("defer 5 until friday", "2026-06-05"),
    ("defer 5 monday", "2026-06-08"),  # today is a Monday: the next one
])
def test_defer_until_a_date(text: str, until: str) -> None:
    assert public(text) == [{"action": "defer", "item": 5, "until": until}]


@pytest.mark.parametrize("text", ["undo 7", "revert 7", "Reverted 7", "rollback 7"])
def test_undo_forms(text: str) -> None:
    assert public(text) == [{"action": "undo", "item": 7}]


def test_several_commands_on_one_line() -> None:
    text = "approve 1, reject 2 wrong info; defer 5 3d and undo 7 then approve 8"
    assert public(text) == [
        {"action": "approve", "item": 1},
        {"action": "reject", "item": 2, "reason": "wrong_information"},
        {"action": "defer", "item": 5, "days": 3},
        {"action": "undo", "item": 7},
        {"action": "approve", "item": 8}]


def test_commands_without_separators_after_item_numbers() -> None:
    assert public("approve 1 3 reject 2 wrong") == [
        *approve(1, 3), {"action": "reject", "item": 2, "reason": "wrong_information"}]


def test_a_reject_comment_may_mention_approving_without_starting_a_command() -> None:
    assert public("reject 2 because we never approve that") == [
        {"action": "reject", "item": 2, "reason": "other",
         "comment": "because we never approve that"}]


def test_a_typical_phone_reply() -> None:
    text = "Hi,\n\napprove 1 3, reject 2 wrong info\nedit 4: Open 9-5.\n\nThanks!\nAnna"
    assert public(text) == [
        *approve(1, 3), {"action": "reject", "item": 2, "reason": "wrong_information"},
        {"action": "edit", "item": 4, "answer": "Open 9-5."}]


@pytest.mark.parametrize("text", [
    "Thanks", "thank you!", "Cheers", "Hi", "Hello team,", "Dear all,", "Yes, 2 is wrong",
    "Hi, see below", "Ok, thanks", "No worries, all good", "Later today I'll check the rest.",
    "I think 2 is fine but let me check", "1. Thanks for the digest", "",
    "Sent from my phone", "Approval needs a second pair of eyes",
])
def test_ordinary_lines_are_neither_commands_nor_problems(text: str) -> None:
    assert read(text) == ReadReply(commands=[], problems=[])


@pytest.mark.parametrize(("text", "why"), [
    ("approve one", "one is not an item number"),
    ("approve x", "x is not an item number"),
    ("approve", "no item number after approve"),
    ("Approved!", "! is not an item number"),
    ("reject", "no item number after reject"),
    ("approve 0", "0 is not an item number (items are 1 to 999)"),
    ("approve 1000", "1000 is not an item number (items are 1 to 999)"),
    ("approve 3-1", "3-1 is not a range of items"),
    ("reject all", 'only approve can take "all"'),
    ("defer all", 'only approve can take "all"'),
    ("approve 1 but change the price", '"but change the price" is not understood after'),
    ("defer 5 until", "no date after until"),
    ("defer 5 2020-01-01", "is not a date within the next year"),
    ("defer 5 2026-02-30", "is not a date"),
    ("defer 5 400d", "is not between a day and a year"),
    ("4 and 5 edit: open at 9", "edit takes exactly one item number"),
    ("edit all: open at 9", 'only approve can take "all"'),
])
def test_lines_that_look_like_commands_but_cannot_be_read_are_problems(text: str,
                                                                       why: str) -> None:
    reply = read(text)
    assert reply.commands == []
    assert len(reply.problems) == 1
    assert reply.problems[0].startswith(f'"{text}": ')
    assert why in reply.problems[0]


def test_valid_and_invalid_lines_mixed() -> None:
    reply = read("approve 1 3\napprove x\nreject 2 tone\nreject two")
    assert [c.public() for c in reply.commands] == [
        *approve(1, 3), {"action": "reject", "item": 2, "reason": "tone"}]
    assert reply.problems == ['"approve x": x is not an item number',
                              '"reject two": two is not an item number']


def test_a_line_with_an_unreadable_part_applies_nothing_of_that_line() -> None:
    reply = read("approve 1, approve x\napprove 2")
    assert [c.public() for c in reply.commands] == approve(2)
    assert reply.problems == ['"approve 1, approve x": x is not an item number']


def test_the_first_command_for_an_item_counts_and_a_conflicting_one_is_reported() -> None:
    reply = read("approve 1\nreject 1 tone\napprove 1")
    assert [c.public() for c in reply.commands] == approve(1)
    assert reply.problems == [
        '"reject 1 tone": item 1 already has "approve 1" earlier in this reply; the first one '
        'counts']


def test_the_same_command_twice_is_kept_once_without_a_problem() -> None:
    assert public("approve 1 1\napprove 1-2") == approve(1, 2)


def test_nothing_is_read_that_is_not_there() -> None:
    reply = read("We should approve the 3 new answers soon, they look good.\n"
                 "Item 4 mentions a refund; no idea if it's right.")
    assert reply == ReadReply(commands=[], problems=[])


def test_public_shape_leaves_out_empty_fields_but_keeps_item() -> None:
    assert ReplyCommand("approve", None, scope="critical").public() == {
        "action": "approve", "item": None, "scope": "critical"}
    assert ReplyCommand("defer", 5, until=date(2026, 12, 24)).public() == {
        "action": "defer", "item": 5, "until": "2026-12-24"}
    assert ReplyCommand("reject", 2, reason="other", comment="x").public() == {
        "action": "reject", "item": 2, "reason": "other", "comment": "x"}
