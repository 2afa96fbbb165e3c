"""Bucket setup against a real S3 server (moto on loopback): applied, checked, idempotent."""

import dataclasses
import datetime as dt

import pytest

from yangyang_rec.bucket import (
    LIFECYCLE_RULE,
    ObjectKeyError,
    apply_bucket_setup,
    inspect_bucket,
    make_client,
    object_key,
)
from yangyang_rec.retention import LIFECYCLE_DAYS


def test_key_layout_uses_the_kst_date():
    assert object_key("welfare", dt.date(2028, 2, 29), "a1b2-c3") == "recordings/welfare/2028/02/29/a1b2-c3.wav"


@pytest.mark.parametrize(
    "department, call_uuid",
    [("../etc", "u1"), ("tax", "../../x"), ("tax/x", "u1"), ("tax", "u 1"), ("tax", "u1\n"), ("", "u1"), ("tax", "")],
)
def test_hostile_names_never_reach_a_key(department, call_uuid):
    with pytest.raises(ObjectKeyError):
        object_key(department, dt.date(2027, 1, 1), call_uuid)


def test_missing_bucket_is_reported_not_created(s3_settings):
    report = inspect_bucket(make_client(s3_settings), s3_settings)
    assert not report.exists and not report.ok
    assert "does not exist" in report.problems[0]


def test_apply_sets_everything_and_is_idempotent(s3_settings):
    client = make_client(s3_settings)
    first = apply_bucket_setup(client, s3_settings)
    assert first.ok, first.lines()
    assert set(first.actions) >= {"create bucket", "versioning", "lifecycle", "public access block", "default encryption"}
    rules = client.get_bucket_lifecycle_configuration(Bucket=s3_settings.s3_bucket)["Rules"]
    assert [r["Expiration"]["Days"] for r in rules] == [LIFECYCLE_DAYS]
    assert rules[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert rules[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    enc = client.get_bucket_encryption(Bucket=s3_settings.s3_bucket)["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    pab = client.get_public_access_block(Bucket=s3_settings.s3_bucket)["PublicAccessBlockConfiguration"]
    assert all(pab.values())

    second = apply_bucket_setup(client, s3_settings)
    assert second.ok and second.actions == []


def test_wrong_and_early_rules_are_found_and_fixed(s3_settings):
    client = make_client(s3_settings)
    apply_bucket_setup(client, s3_settings)
    bucket = s3_settings.s3_bucket
    wrong = {**LIFECYCLE_RULE, "Expiration": {"Days": 365}}
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [wrong]})
    report = inspect_bucket(client, s3_settings)
    assert not report.ok and "before their year is over" in " ".join(report.problems)
    fixed = apply_bucket_setup(client, s3_settings)
    assert fixed.ok and fixed.actions == ["lifecycle"]

    client.delete_bucket_encryption(Bucket=bucket)
    client.delete_public_access_block(Bucket=bucket)
    report = inspect_bucket(client, s3_settings)
    assert {p.split(":")[0] for p in report.problems} == {"default encryption", "public access block"}
    assert apply_bucket_setup(client, s3_settings).ok


def test_object_lock_on_a_new_bucket(s3_settings):
    settings = dataclasses.replace(s3_settings, s3_object_lock=True)
    client = make_client(settings)
    report = apply_bucket_setup(client, settings)
    assert report.ok, report.lines()
    conf = client.get_object_lock_configuration(Bucket=settings.s3_bucket)["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled"
    assert "Rule" not in conf  # no default retention: per-object retain-until dates only
    assert apply_bucket_setup(client, settings).actions == []


def test_object_lock_on_an_existing_bucket(s3_settings):
    client = make_client(s3_settings)
    apply_bucket_setup(client, s3_settings)
    settings = dataclasses.replace(s3_settings, s3_object_lock=True)
    report = apply_bucket_setup(client, settings)
    lock = next(f for f in report.features if f.name == "object lock")
    # Stores differ: AWS (since 2023) and moto enable it on a versioned bucket; others refuse, and then
    # the message must say to create a new bucket.
    assert lock.ok or "Create a new bucket" in lock.detail


def test_unreachable_store_is_a_message_not_a_traceback(tmp_path):
    from tests.s3_fixtures import free_port, settings_for

    settings = settings_for(f"http://127.0.0.1:{free_port()}", tmp_path)
    report = apply_bucket_setup(make_client(settings, max_attempts=1, connect_timeout=1), settings)
    assert not report.ok and "cannot reach the store" in report.error


def test_store_without_features_gets_clear_messages(limited_store, tmp_path):
    from tests.s3_fixtures import settings_for

    endpoint = limited_store({"publicAccessBlock": (501, "NotImplemented"), "object-lock": (400, "MalformedXML")})
    settings = settings_for(endpoint, tmp_path, s3_object_lock=True)
    client = make_client(settings)
    report = apply_bucket_setup(client, settings)
    assert not report.ok and report.error == ""
    assert report.missing_features == ["public access block", "object lock"]
    text = "\n".join(report.lines())
    assert "this store does not implement public access block (NotImplemented)" in text
    assert "does not implement object lock (MalformedXML)" in text
    assert "purge" in text  # says who covers for the missing feature
    again = apply_bucket_setup(client, settings)
    assert again.missing_features == ["public access block", "object lock"] and again.actions == []
