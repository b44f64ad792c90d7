//! AKQL properties (issue 17): printing then parsing gives the same tree; an operator and its
//! negation never both match, and exactly one does unless the value is missing (or JSON null
//! under a text operator); the indexed matcher agrees with the plain tree walk.

use eventmatchd::akql::parser::{parse, Comparison, Const, Expr, Logic, Op};
use eventmatchd::akql::{Choices, Columns, EventView, Query};
use eventmatchd::catalog::{Catalog, EVENT_ACTIONS};
use eventmatchd::control::CommandSource;
use eventmatchd::engine::Engine;
use eventmatchd::events::Event;
mod helpers;
use eventmatchd::policyset::PolicySet;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Names that exist, with the value pool that suits each (valid for its field).
fn field_and_value() -> BoxedStrategy<(String, BoxedStrategy<String>)> {
    let text = |xs: &'static [&'static str]| {
        proptest::sample::select(xs)
            .prop_map(str::to_string)
            .boxed()
    };
    prop_oneof![
        Just((
            "action".to_string(),
            text(&[
                "login",
                "Login",
                "logout",
                "login_failed",
                "Login Failed",
                "custom_x",
                "LOG",
                "in"
            ])
        )),
        Just((
            "app".to_string(),
            text(&["authentik.core", "authentik", "CORE", "a%", "mönitor", "Ö"])
        )),
        Just((
            "client_ip".to_string(),
            text(&["10.0.0.1", "10.0.0.2", "::1", "2001:DB8::1"])
        )),
        Just((
            "created".to_string(),
            text(&[
                "2025-01-01",
                "2025-01-01 00:00",
                "2025-06-30 12:00:01",
                "2024-12-31"
            ])
        )),
        Just((
            "event_uuid".to_string(),
            text(&[
                "5f0c6f5e-7d1b-4c3a-9e2f-00000000abcd",
                "5F0C6F5E7D1B4C3A9E2F00000000ABCD",
                "00000000-0000-4000-8000-000000000000"
            ])
        )),
        Just((
            "user.username".to_string(),
            text(&["jane", "JANE", "élodie", "Élodie", ""])
        )),
        Just(("user.pk".to_string(), text(&["7", "1", "x"]))),
        Just((
            "context.a".to_string(),
            text(&["x", "1", "true", "null", "[]", "{\"b\": 1}", "b"])
        )),
        Just(("context.a.b".to_string(), text(&["x", "1", "y"]))),
        Just((
            "brand.name".to_string(),
            text(&["Default brand", "default", ""])
        )),
    ]
    .boxed()
}

fn op() -> impl Strategy<Value = Op> {
    proptest::sample::select(Op::ALL.to_vec())
}

/// A comparison valid for authentik's schema (it compiles).
fn comparison() -> BoxedStrategy<Comparison> {
    (field_and_value(), op())
        .prop_flat_map(|((name, values), op)| {
            let value = match op {
                Op::In | Op::NotIn => prop::collection::vec(values, 1..4)
                    .prop_map(|v| Const::List(v.into_iter().map(Const::Str).collect()))
                    .boxed(),
                _ => values.prop_map(Const::Str).boxed(),
            };
            value.prop_map(move |value| Comparison {
                name: name.split('.').map(str::to_string).collect(),
                op,
                value,
            })
        })
        .boxed()
}

fn tree(leaf: BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    leaf.prop_recursive(4, 16, 2, |inner| {
        (
            inner.clone(),
            prop_oneof![Just(Logic::And), Just(Logic::Or)],
            inner,
        )
            .prop_map(|(a, l, b)| Expr::Logical(l, Box::new(a), Box::new(b)))
    })
    .boxed()
}

/// Any string: quotes, backslashes, line breaks and non-ASCII must survive printing.
fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\''),
            Just('\\'),
            Just('\n'),
            Just('\r'),
            Just('\u{2028}'),
            Just('é'),
            Just(' '),
            Just('\u{a0}'),
            Just('%'),
            any::<char>()
        ],
        0..12,
    )
    .prop_map(|c| c.into_iter().collect())
}

/// Syntax only (any names and constants), for the printer.
fn any_expr() -> BoxedStrategy<Expr> {
    let name = prop::collection::vec("[_a-zA-Z][_a-zA-Z0-9]{0,5}", 1..4).prop_filter(
        "not a keyword",
        |parts| {
            parts.len() > 1
                || ![
                    "and",
                    "or",
                    "not",
                    "in",
                    "startswith",
                    "endswith",
                    "True",
                    "False",
                    "None",
                ]
                .contains(&parts[0].as_str())
        },
    );
    let number = "-?(0|[1-9][0-9]{0,4})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?";
    let scalar = prop_oneof![any_text().prop_map(Const::Str), number.prop_map(Const::Num),];
    let leaf = (
        name,
        op(),
        scalar.clone(),
        prop::collection::vec(scalar, 1..4),
        0..4u8,
    )
        .prop_map(|(name, op, s, list, special)| {
            let value = match op {
                Op::In | Op::NotIn => Const::List(list),
                o if o.is_text() => match s {
                    Const::Num(n) => Const::Str(n),
                    other => other,
                },
                Op::Eq | Op::Ne => match special {
                    1 => Const::True,
                    2 => Const::None,
                    _ => s,
                },
                _ => s,
            };
            Expr::Cmp(Comparison { name, op, value })
        })
        .boxed();
    tree(leaf)
}

fn event() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(json!("x")),
        Just(json!("X")),
        Just(json!(1)),
        Just(json!(true)),
        Just(Value::Null),
        Just(json!([])),
        Just(json!(["x"])),
        Just(json!({"b": "y"})),
        Just(json!({"b": 1})),
    ];
    (
        proptest::sample::select(vec!["login", "logout", "login_failed", "custom_x"]),
        proptest::sample::select(vec!["authentik.core", "authentik.flows", "mönitor"]),
        prop::option::of(proptest::sample::select(vec![
            "10.0.0.1",
            "10.0.0.2",
            "::1",
            "2001:db8::1",
        ])),
        proptest::sample::select(vec![
            "2025-01-01T00:00:00Z",
            "2024-12-31T23:59:59.5Z",
            "2025-06-30T12:00:01Z",
        ]),
        prop::option::of(leaf.clone()),
        prop::option::of(proptest::sample::select(vec!["jane", "Élodie", "JANE"])),
        prop::option::of(proptest::sample::select(vec!["Default brand", "x"])),
    )
        .prop_map(|(action, app, ip, created, a, username, brand)| {
            let mut ctx = serde_json::Map::new();
            // Off every query's path: a guided parse skips it unbuilt.
            ctx.insert(
                "noise".into(),
                json!({"a": {"b": "y"}, "x": [1, {"a": "y"}], "s": "a\"b"}),
            );
            if let Some(a) = a {
                ctx.insert("a".into(), a);
            }
            let mut user = json!({"pk": 7});
            if let Some(u) = username {
                user["username"] = json!(u);
            }
            let mut ev = json!({"pk": "5f0c6f5e-7d1b-4c3a-9e2f-00000000abcd", "action": action,
                "app": app, "client_ip": ip, "created": created, "context": ctx, "user": user});
            if let Some(b) = brand {
                ev["brand"] = json!({"name": b});
            }
            ev
        })
        .boxed()
}

fn choices() -> Choices {
    Choices::new(EVENT_ACTIONS.iter().copied())
}

/// What the test knows without the evaluator: is the compared value missing (a JSON path
/// that does not resolve), or JSON null?
fn json_value<'a>(ev: &'a Value, name: &[String]) -> Option<Option<&'a Value>> {
    let root = match name[0].as_str() {
        "user" | "brand" | "context" => ev.get(&name[0]),
        _ => return None,
    };
    let mut v = root;
    for k in &name[1..] {
        v = v.and_then(|x| x.as_object()).and_then(|o| o.get(k));
    }
    Some(v)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn printing_then_parsing_gives_the_same_tree(e in any_expr()) {
        let printed = e.to_string();
        let back = parse(&printed);
        prop_assert_eq!(back.as_ref(), Ok(&e), "printed: {}", printed);
    }

    #[test]
    fn an_operator_and_its_negation(c in comparison(), ev in event()) {
        let Some(neg) = c.op.negation() else { return Ok(()) };
        let q = Query::compile(&Expr::Cmp(c.clone()).to_string(), &choices());
        let nq = Query::compile(&Expr::Cmp(Comparison { op: neg, ..c.clone() }).to_string(), &choices());
        prop_assert!(q.error().is_none(), "{:?}", q);
        let e = Event::parse(ev.to_string().as_bytes()).expect("valid event");
        let cols = Columns::new(&e);
        let view = EventView::new(&cols);
        let (a, b) = (q.matches(&view).unwrap_or(false), nq.matches(&view).unwrap_or(false));
        prop_assert!(!(a && b), "{} and its negation both match {}", q.text(), ev);
        let undefined = match json_value(&ev, &c.name) {
            Some(None) => true,
            Some(Some(Value::Null)) => c.op.is_text(),
            _ => false,
        };
        if !undefined {
            prop_assert!(a || b, "neither {} nor its negation matches {}", q.text(), ev);
        }
    }

    #[test]
    fn the_indexed_matcher_agrees_with_the_tree_walk(
        queries in prop::collection::vec((tree(comparison().prop_map(Expr::Cmp).boxed()), any::<bool>(), any::<bool>(), 0u8..3), 1..12),
        events in prop::collection::vec(event(), 1..6),
    ) {
        let engine = Engine::new(Catalog::default(), 1000);
        let mut offset = 0i64;
        let mut send = |cmd: Value| {
            offset += 1;
            let out = engine.apply_command(cmd.to_string().as_bytes(), CommandSource { partition: 0, offset });
            assert!(out.status < 400, "{cmd}: {}", out.status);
        };
        for r in 0..3u8 {
            send(json!({"method": "POST", "path": "/events/rules/", "body": {"pk": format!("00000000-0000-4000-8000-0000000001{r:02x}"), "name": format!("r{r}")}}));
        }
        let texts: Vec<String> = queries.iter().enumerate().map(|(n, (q, ..))| {
            // Some policies also set the plain `action` criterion, some are broken queries.
            // Some are indexed by a top-level action conjunct (the grammar groups to the right,
            // so the unparenthesised form is top-level too), some looked up by an address or a
            // JSON string (`::1` and `2001:DB8::1` equal the events' addresses as `inet`).
            match n % 7 {
                0 => format!("action in (\"login\", \"Logout\", \"custom_x\") and ({q})"),
                1 => format!("action = \"login_failed\" and {q}"),
                2 => format!("{q} and"),
                3 => format!("client_ip in (\"::1\", \"2001:DB8::1\", \"::1\") and ({q})"),
                4 => format!("action = \"login\" and context.a.b = \"y\" and ({q})"),
                // Looked up under two fields: an event may reach it through both.
                5 => format!("(client_ip = \"10.0.0.2\" or user.username = \"jane\") and ({q})"),
                _ => q.to_string(),
            }
        }).collect();
        let policy_pk = |n: usize| format!("00000000-0000-4000-8000-0000000002{n:02x}");
        for (n, (_, negate, with_action, rule)) in queries.iter().enumerate() {
            let mut body = json!({"pk": policy_pk(n), "name": format!("p{n}"), "query": texts[n], "execution_logging": true});
            if *with_action {
                body["action"] = json!("login");
            }
            send(json!({"method": "POST", "path": "/policies/event_matcher/", "body": body}));
            send(json!({"method": "POST", "path": "/policies/bindings/", "body": {"policy": policy_pk(n), "target": format!("00000000-0000-4000-8000-0000000001{rule:02x}"), "order": n, "negate": negate}}));
        }
        let agree = |set: &PolicySet| -> Result<(), TestCaseError> {
            for ev in &events {
                let e = Event::parse(ev.to_string().as_bytes()).expect("valid event");
                let (indexed, linear) = helpers::indexed_and_linear(set, &e);
                prop_assert_eq!(indexed.0, linear.0, "fired rules differ for {} at version {}", ev, set.version());
                prop_assert_eq!(indexed.1, linear.1, "executions differ for {}", ev);
            }
            Ok(())
        };
        agree(&engine.snapshot())?;
        // Every policy PATCHed to the next one's query, its `action` criterion flipped: the
        // matcher is patched (or compiled afresh when a query starts or stops raising), and
        // must agree after each command.
        for (n, (_, _, with_action, _)) in queries.iter().enumerate() {
            let before = engine.snapshot();
            let body = json!({"query": texts[(n + 1) % texts.len()], "action": if *with_action { Value::Null } else { json!("login") }});
            send(json!({"method": "PATCH", "path": format!("/policies/event_matcher/{}/", policy_pk(n)), "body": body}));
            let after = engine.snapshot();
            let raising = |t: &str| Query::compile(t, &choices()).error().is_some();
            if !raising(&texts[n]) && !raising(&texts[(n + 1) % texts.len()]) {
                prop_assert!(after.matcher().shares_wiring(before.matcher()), "a query PATCH patches the matcher");
            }
            agree(&after)?;
        }
    }
}

/// The generators reach the interesting cases: queries that match, that do not, that are
/// indexed by action, and events where a JSON value is missing or null.
#[test]
fn generators_reach_the_interesting_cases() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut matched, mut unmatched, mut indexed, mut missing) = (0, 0, 0, 0);
    let mut keyed = 0;
    for _ in 0..400 {
        let c = comparison().new_tree(&mut runner).expect("tree").current();
        let ev = event().new_tree(&mut runner).expect("tree").current();
        let q = Query::compile(&Expr::Cmp(c.clone()).to_string(), &choices());
        let e = Event::parse(ev.to_string().as_bytes()).expect("valid event");
        let cols = Columns::new(&e);
        match q.matches(&EventView::new(&cols)) {
            Some(true) => matched += 1,
            Some(false) => unmatched += 1,
            None => panic!("generated comparisons compile: {q:?}"),
        }
        indexed += usize::from(q.action_keys().is_some());
        keyed += usize::from(q.lookup_keys().is_some());
        missing += usize::from(matches!(json_value(&ev, &c.name), Some(None)));
    }
    assert!(
        matched > 40 && unmatched > 40 && indexed > 5 && missing > 10 && keyed > 10,
        "matched {matched}, unmatched {unmatched}, indexed {indexed}, missing {missing}, keyed {keyed}"
    );
}
