"""Drives eventmatchd through authentik's official Python client (authentik-client from PyPI),
unchanged. Run by tests/http_api_clients.rs in two steps:

  python_flow.py setup          creates a policy, a rule and a binding; applies the seed's PATCH
                                of the policy; prints {"policy": pk} on its last line
  python_flow.py notifications  (after the test sent 3 login events of user 7 and 1 of user 8)
                                lists, PATCHes seen, mark_all_seen, errors, pagination, delete

Environment: AK_HOST (http://127.0.0.1:PORT), AK_ADMIN, AK_USER (bearer keys), AK_POLICY.
Every check is an assert: a failure exits non-zero with the traceback.
"""

import json
import os
import sys
import uuid

import authentik_client as ak
from authentik_client.exceptions import (
    BadRequestException,
    ForbiddenException,
    NotFoundException,
)


def client(key):
    return ak.ApiClient(ak.Configuration(host=os.environ["AK_HOST"] + "/api/v3", access_token=key))


def setup():
    with client(os.environ["AK_ADMIN"]) as c:
        policies, events = ak.PoliciesApi(c), ak.EventsApi(c)
        p = policies.policies_event_matcher_create(
            ak.EventMatcherPolicyRequest(name="py logins", action=ak.EventActions.LOGIN)
        )
        assert isinstance(p, ak.EventMatcherPolicy) and p.bound_to == 0, p
        # The seed's PATCH: every field of PatchedEventMatcherPolicyRequest.
        seed = policies.policies_event_matcher_partial_update(
            p.pk,
            patched_event_matcher_policy_request=ak.PatchedEventMatcherPolicyRequest(
                name="py seed", execution_logging=True, action=ak.EventActions.LOGIN,
                client_ip="10.9.9.9", app=ak.AppEnum.AUTHENTIK_DOT_TENANTS,
                model=ak.ModelEnum.AUTHENTIK_TENANTS_DOT_DOMAIN,
            ),
        )
        assert (seed.name, seed.execution_logging, seed.client_ip) == ("py seed", True, "10.9.9.9"), seed
        assert seed.app == ak.AppEnum.AUTHENTIK_DOT_TENANTS and seed.model == ak.ModelEnum.AUTHENTIK_TENANTS_DOT_DOMAIN, seed
        # Back to a policy that matches the test's logins (PUT: name required, the rest kept
        # unless sent; nulls sent explicitly through a raw dict).
        policies.policies_event_matcher_update(
            p.pk, ak.EventMatcherPolicyRequest(name="py logins", action=ak.EventActions.LOGIN)
        )
        back = policies.policies_event_matcher_partial_update(
            p.pk,
            patched_event_matcher_policy_request=ak.PatchedEventMatcherPolicyRequest.from_dict(
                {"client_ip": None, "app": None, "model": None}
            ),
        )
        assert (back.client_ip, back.app, back.model) == (None, None, None), back
        r = events.events_rules_create(
            ak.NotificationRuleRequest(name="py to the user", severity=ak.SeverityEnum.ALERT, destination_event_user=True)
        )
        b = policies.policies_bindings_create(ak.PolicyBindingRequest(policy=p.pk, target=r.pk, order=0))
        assert b.policy == p.pk and b.target == r.pk and b.policy_obj is not None, b
        got = policies.policies_event_matcher_retrieve(p.pk)
        assert got.bound_to == 1, got
        listed = policies.policies_bindings_list(target=r.pk)
        assert listed.pagination.count == 1 and listed.results[0].pk == b.pk, listed
        # 400 as the client's BadRequestException, with DRF's body.
        try:
            policies.policies_event_matcher_create(ak.EventMatcherPolicyRequest(name="py logins"))
            raise AssertionError("a duplicate name was accepted")
        except BadRequestException as e:
            assert json.loads(e.body) == {"name": ["policy with this name already exists."]}, e.body
        # Pagination over 25+ policies.
        for i in range(25):
            policies.policies_event_matcher_create(ak.EventMatcherPolicyRequest(name=f"py bulk {i:02}"))
        page1 = policies.policies_event_matcher_list(page_size=10)
        assert (page1.pagination.count, page1.pagination.total_pages, page1.pagination.next) == (26, 3, 2), page1.pagination
        page3 = policies.policies_event_matcher_list(page_size=10, page=3)
        assert (len(page3.results), page3.pagination.next, page3.pagination.previous) == (6, 0, 2), page3.pagination
        names = [x.name for x in policies.policies_event_matcher_list(page_size=100).results]
        assert names == sorted(names) and len(names) == 26, names
        # DRF's search: each term ("bulk", "1") somewhere in the name: 01, 10-19, 21.
        assert policies.policies_event_matcher_list(search="bulk 1").pagination.count == 12
        try:
            policies.policies_event_matcher_list(page=4, page_size=10)
            raise AssertionError("a page past the end was answered")
        except NotFoundException as e:
            assert json.loads(e.body) == {"detail": "Invalid page."}, e.body
        print(json.dumps({"policy": str(p.pk)}))


def notifications():
    with client(os.environ["AK_USER"]) as c:
        events = ak.EventsApi(c)
        mine = events.events_notifications_list(ordering="created")
        assert mine.pagination.count == 3, mine.pagination
        assert all(isinstance(n, ak.Notification) and n.event.action == ak.EventActions.LOGIN for n in mine.results)
        first = mine.results[0]
        # The seed's PATCH of a notification.
        seen = events.events_notifications_partial_update(
            first.pk, patched_notification_request=ak.PatchedNotificationRequest(seen=True)
        )
        assert seen.pk == first.pk and seen.seen is True, seen
        assert events.events_notifications_retrieve(first.pk).seen is True
        assert events.events_notifications_list(seen=False).pagination.count == 2
        events.events_notifications_mark_all_seen_create()
        assert events.events_notifications_list(seen=False).pagination.count == 0
        # 403 and 404 as the client's exceptions.
        try:
            ak.PoliciesApi(c).policies_event_matcher_destroy(os.environ["AK_POLICY"])
            raise AssertionError("a non-admin deleted a policy")
        except ForbiddenException as e:
            assert json.loads(e.body) == {"detail": "You do not have permission to perform this action."}, e.body
        try:
            events.events_notifications_retrieve(str(uuid.uuid4()))
            raise AssertionError("an unknown notification was answered")
        except NotFoundException:
            pass
        events.events_notifications_destroy(first.pk)
        assert events.events_notifications_list().pagination.count == 2
    with client(os.environ["AK_ADMIN"]) as c:
        events, policies = ak.EventsApi(c), ak.PoliciesApi(c)
        unseen = events.events_notifications_list(seen=False)
        assert unseen.pagination.count == 1 and unseen.results[0].pk != first.pk, unseen
        policies.policies_event_matcher_destroy(os.environ["AK_POLICY"])
        try:
            policies.policies_event_matcher_retrieve(os.environ["AK_POLICY"])
            raise AssertionError("a deleted policy was answered")
        except NotFoundException:
            pass
    with client("wrong-key") as c:
        try:
            ak.EventsApi(c).events_notifications_list()
            raise AssertionError("an unknown key was accepted")
        except ForbiddenException as e:
            assert json.loads(e.body) == {"detail": "Token invalid/expired"}, e.body
    print("python client flow: ok")


if __name__ == "__main__":
    {"setup": setup, "notifications": notifications}[sys.argv[1]]()
