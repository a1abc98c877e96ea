"""The client and the local scheduler refuse bad shot groups with the same rule and words."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from asyncjob._batch import build_submission
from asyncjob._config import ClientConfig

from ..conftest import BELL
from .conftest import chunk, new_job

CONFIG = ClientConfig.build("http://127.0.0.1:1/api/", "t", 1000)
THREE = {"a": BELL, "b": BELL, "c": BELL}


@pytest.mark.parametrize(
    "groups",
    [
        [[0, 2, 10], [1, 3, 10]],
        [[0, 4, 10]],
        [[0, 2, 10]],
        [[0, 3, 0]],
        [[0, 3]],
        [[0, 3, True]],
        [],
        "0,3,10",
    ],
)
async def test_bad_shot_groups_get_the_same_answer_from_both_ends(
    http: aiohttp.ClientSession, groups: Any
) -> None:
    with pytest.raises((TypeError, ValueError)) as client_side:
        build_submission(THREE, CONFIG, {"shot_groups": groups})
    job_id = await new_job(http)
    async with http.post(
        f"job/{job_id}/add_circuits/", json=chunk(THREE, shot_groups=groups)
    ) as r:
        assert r.status == 400
        detail = (await r.json())["detail"]
    assert detail == str(client_side.value).replace("batch", "chunk")


async def test_the_scheduler_takes_shot_groups_in_any_order(http: aiohttp.ClientSession) -> None:
    job_id = await new_job(http)
    body = chunk(THREE, shot_groups=[[1, 3, 5], [0, 1, 7]])
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 200, await r.text()
