"""How long and how big each part of the bench runs: FULL for figures, QUICK for a smoke test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimelineSizes:
    """Interactions: a seeded timeline where one contact holds `hot_contact` of them."""

    interactions: int
    hot_contact: int
    page_size: int
    first_pages: int  # first-page queries timed, one at a time
    walks: int  # walks of the hot contact's whole timeline, page token by page token
    known_contacts: int  # contacts in the read model of a fresh interactions service


@dataclass(frozen=True)
class FollowupSizes:
    """Follow-up: open promises at scale, reminders falling due, interactions making promises."""

    promises: int  # open promises seeded (fewer if the seed time limit runs out)
    tick_at: int  # the smaller store the scheduler's tick is timed on too
    busy_ticks: int  # ticks timed that each deliver a full batch
    idle_ticks: int  # ticks timed with nothing due
    due: int  # promises falling due during the reminder-lag run
    due_lead_seconds: float  # from inserting them to the first due time
    due_window_seconds: float  # their due times are spread evenly over this
    pipeline_rate: float  # interactions recorded per second, each with one promise
    pipeline_seconds: float
    straggler_seconds: float  # how long to wait for the last reminder or promise to show


@dataclass(frozen=True)
class PropagationSizes:
    """Event -> effect at a low rate: customers made one at a time, every consumer watched."""

    customers: int  # contacts created (each then touched; some erased or merged)
    rate: float  # customers started a second, at most
    time_limit_seconds: float  # no customer is started after this
    deadline_seconds: float  # an effect not seen this long after its call is a miss


@dataclass(frozen=True)
class Profile:
    name: str
    warmup_seconds: float
    measure_seconds: float
    in_flight: int
    seed_count: int
    seed_time_limit_seconds: float  # per seeded store
    lookups: int
    timeline: TimelineSizes
    followup: FollowupSizes
    propagation: PropagationSizes


FULL = Profile(
    "full",
    2.0,
    10.0,
    64,
    1_000_000,
    150.0,
    10_000,
    TimelineSizes(1_000_000, 10_000, 50, 1_000, 5, 1_000),
    FollowupSizes(1_000_000, 10_000, 5, 200, 10_000, 4.0, 20.0, 500.0, 10.0, 20.0),
    PropagationSizes(400, 20.0, 90.0, 10.0),
)
QUICK = Profile(
    "quick",
    0.5,
    2.0,
    64,
    20_000,
    60.0,
    2_000,
    TimelineSizes(20_000, 2_000, 50, 200, 2, 200),
    FollowupSizes(20_000, 2_000, 2, 50, 1_000, 1.5, 2.0, 500.0, 2.0, 5.0),
    PropagationSizes(60, 20.0, 20.0, 10.0),
)
