// Drives eventmatchd through authentik's official TypeScript client (@goauthentik/api from
// npm), unchanged, with node. Run by tests/http_api_clients.rs in two steps, as python_flow.py:
//   node ts_flow.cjs setup          policy, rule, binding, the seed's PATCH; prints {"policy": pk}
//   node ts_flow.cjs notifications  list, PATCH seen, mark_all_seen, 403/404, delete
// Environment: AK_HOST, AK_ADMIN, AK_USER, AK_POLICY. A failed check exits non-zero.
"use strict";
const assert = require("node:assert/strict");
const ak = require("@goauthentik/api");

const config = (key) =>
    new ak.Configuration({ basePath: `${process.env.AK_HOST}/api/v3`, accessToken: key });

async function status(promise) {
    try {
        await promise;
        return 200;
    } catch (e) {
        assert.ok(e instanceof ak.ResponseError, `not a ResponseError: ${e}`);
        return e.response.status;
    }
}

async function setup() {
    const policies = new ak.PoliciesApi(config(process.env.AK_ADMIN));
    const events = new ak.EventsApi(config(process.env.AK_ADMIN));
    const p = await policies.policiesEventMatcherCreate({
        eventMatcherPolicyRequest: { name: "ts logins", action: ak.EventActions.Login },
    });
    assert.equal(p.boundTo, 0);
    const seed = await policies.policiesEventMatcherPartialUpdate({
        policyUuid: p.pk,
        patchedEventMatcherPolicyRequest: {
            name: "ts seed", executionLogging: true, action: ak.EventActions.Login,
            clientIp: "10.9.9.9", app: ak.AppEnum.AuthentikTenants, model: ak.ModelEnum.AuthentikTenantsDomain,
        },
    });
    assert.deepEqual([seed.name, seed.executionLogging, seed.clientIp, seed.app], ["ts seed", true, "10.9.9.9", "authentik.tenants"]);
    const back = await policies.policiesEventMatcherPartialUpdate({
        policyUuid: p.pk,
        patchedEventMatcherPolicyRequest: { name: "ts logins", clientIp: null, app: null, model: null },
    });
    // The client decodes a JSON null as undefined.
    assert.ok(back.clientIp == null && back.app == null && back.model == null, JSON.stringify(back));
    const r = await events.eventsRulesCreate({
        notificationRuleRequest: { name: "ts to the user", severity: ak.SeverityEnum.Alert, destinationEventUser: true },
    });
    const b = await policies.policiesBindingsCreate({ policyBindingRequest: { policy: p.pk, target: r.pk, order: 0 } });
    assert.equal(b.policyObj.pk, p.pk);
    assert.equal((await policies.policiesEventMatcherRetrieve({ policyUuid: p.pk })).boundTo, 1);
    assert.equal(await status(policies.policiesEventMatcherCreate({ eventMatcherPolicyRequest: { name: "ts logins" } })), 400);
    const list = await policies.policiesEventMatcherList({ pageSize: 1 });
    assert.deepEqual([list.pagination.count, list.pagination.next, list.pagination.previous], [1, 0, 0]);
    console.log(JSON.stringify({ policy: p.pk }));
}

async function notifications() {
    const events = new ak.EventsApi(config(process.env.AK_USER));
    const mine = await events.eventsNotificationsList({ ordering: "created" });
    assert.equal(mine.pagination.count, 3);
    assert.ok(mine.results.every((n) => n.event.action === "login" && n.created instanceof Date));
    const first = mine.results[0];
    const seen = await events.eventsNotificationsPartialUpdate({ uuid: first.pk, patchedNotificationRequest: { seen: true } });
    assert.equal(seen.seen, true);
    assert.equal((await events.eventsNotificationsList({ seen: false })).pagination.count, 2);
    await events.eventsNotificationsMarkAllSeenCreate();
    assert.equal((await events.eventsNotificationsList({ seen: false })).pagination.count, 0);
    const userPolicies = new ak.PoliciesApi(config(process.env.AK_USER));
    assert.equal(await status(userPolicies.policiesEventMatcherDestroy({ policyUuid: process.env.AK_POLICY })), 403);
    assert.equal(await status(events.eventsNotificationsRetrieve({ uuid: "00000000-0000-4000-8000-000000000000" })), 404);
    await events.eventsNotificationsDestroy({ uuid: first.pk });
    assert.equal((await events.eventsNotificationsList()).pagination.count, 2);
    const admin = new ak.PoliciesApi(config(process.env.AK_ADMIN));
    await admin.policiesEventMatcherDestroy({ policyUuid: process.env.AK_POLICY });
    assert.equal(await status(admin.policiesEventMatcherRetrieve({ policyUuid: process.env.AK_POLICY })), 404);
    assert.equal(await status(new ak.EventsApi(config("wrong-key")).eventsNotificationsList()), 403);
    console.log("typescript client flow: ok");
}

({ setup, notifications })[process.argv[2]]().catch((e) => {
    console.error(e);
    process.exit(1);
});
