//! The HTTP adapters against the fake provider over real HTTP on 127.0.0.1: each
//! scenario runs through `providers::call` for all three wire formats (OpenAI chat
//! completions, Anthropic Messages, Gemini generateContent) and checks the answer
//! or the failure class, and what the fake received. No test reaches the network.

mod providers_http {
    use std::time::{Duration, Instant};

    use tokio_util::sync::CancellationToken;
    use vaultline::metering::pricing::Usage;
    use vaultline::providers::{self, Answer, Failure, FailureKind, Kind, Request, Target};
    use vaultline::quota::secret::Secret;
    use vaultline_fakeprovider::{DEFAULT_KEY, FakeProvider, Format, Step};

    const KINDS: [Kind; 3] = [Kind::Openai, Kind::Anthropic, Kind::Gemini];
    const SYSTEM: &str = "Be brief.";
    const PROMPT: &str = "Say hello please.";

    async fn fake() -> FakeProvider {
        FakeProvider::start()
            .await
            .expect("the fake provider starts")
    }

    fn client() -> reqwest::Client {
        // No proxy: a proxy from the environment must not see loopback test traffic.
        providers::http::client_builder()
            .no_proxy()
            .build()
            .expect("a client")
    }

    fn target(fake: &FakeProvider, kind: Kind, key: &str) -> Target {
        let base_url = match kind {
            Kind::Openai => fake.openai_base(),
            Kind::Anthropic => fake.anthropic_base(),
            Kind::Gemini => fake.gemini_base(),
            other => panic!("{other:?} is not an HTTP adapter"),
        };
        Target {
            kind,
            base_url: Some(base_url),
            command: None,
            extra_args: vec![],
            secret: Some(Secret::new(key)),
        }
    }

    fn request(model: &str, timeout: Duration) -> Request {
        Request {
            model: model.to_string(),
            system: Some(SYSTEM.to_string()),
            prompt: PROMPT.to_string(),
            max_output_tokens: 64,
            answer_schema: None,
            timeout,
            workdir: None,
        }
    }

    /// Scripts `model` with `steps` and calls it through `kind`'s adapter.
    async fn run(
        fake: &FakeProvider,
        kind: Kind,
        model: &str,
        steps: Vec<Step>,
    ) -> Result<Answer, Failure> {
        fake.script(model, steps);
        let t = target(fake, kind, DEFAULT_KEY);
        let req = request(model, Duration::from_secs(5));
        providers::call(&client(), &t, &req, &CancellationToken::new()).await
    }

    fn format(kind: Kind) -> Format {
        match kind {
            Kind::Openai => Format::Openai,
            Kind::Anthropic => Format::Anthropic,
            _ => Format::Gemini,
        }
    }

    #[tokio::test]
    async fn success_with_usage_and_what_the_provider_received() {
        let fake = fake().await;
        for kind in KINDS {
            let a = run(&fake, kind, "m-ok", vec![Step::answer("hello there")])
                .await
                .unwrap_or_else(|f| panic!("{kind:?}: {f:?}"));
            assert_eq!(a.text, "hello there", "{kind:?}");
            // The fake counts a token per word: "Be brief." + "Say hello please." = 5.
            let usage = Usage {
                input: 5,
                output: 2,
                cache_read: 0,
                cache_write: 0,
            };
            assert_eq!(a.usage, Some(usage), "{kind:?}");
            assert_eq!(a.model.as_deref(), Some("m-ok"), "{kind:?}");
            assert!(!a.refused, "{kind:?}");
            let finish = match kind {
                Kind::Openai => "stop",
                Kind::Anthropic => "end_turn",
                _ => "STOP",
            };
            assert_eq!(a.finish_reason.as_deref(), Some(finish), "{kind:?}");
            let requests_limit = a.rate.as_ref().and_then(|r| r.requests_limit);
            let want_limit = (kind != Kind::Gemini).then_some(1000);
            assert_eq!(requests_limit, want_limit, "{kind:?}: rate signal");
        }
        let seen = fake.requests();
        assert_eq!(seen.len(), 3);
        for (r, kind) in seen.iter().zip(KINDS) {
            assert_eq!(r.format, format(kind));
            assert_eq!(r.model, "m-ok");
            assert_eq!(r.prompt, PROMPT);
            assert_eq!(r.system.as_deref(), Some(SYSTEM));
            assert_eq!(r.key_index, Some(0));
        }
        // A compatible server (not api.openai.com) gets max_tokens.
        assert_eq!(seen[0].body["max_tokens"], 64);
        assert_eq!(seen[1].body["max_tokens"], 64);
        assert_eq!(seen[2].body["generationConfig"]["maxOutputTokens"], 64);
    }

    #[tokio::test]
    async fn usage_absent() {
        let fake = fake().await;
        for kind in KINDS {
            let a = run(&fake, kind, "m", vec![Step::answer_without_usage("hi")])
                .await
                .unwrap_or_else(|f| panic!("{kind:?}: {f:?}"));
            assert_eq!(a.text, "hi", "{kind:?}");
            assert_eq!(a.usage, None, "{kind:?}");
            assert_eq!(a.reported_cost_nanos, None, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_reported_cost_becomes_nanos() {
        let fake = fake().await;
        let step: Step =
            serde_json::from_str(r#"{"answer": {"text": "hi", "cost_usd": 0.0025}}"#).unwrap();
        let a = run(&fake, Kind::Openai, "m", vec![step]).await.unwrap();
        assert_eq!(a.reported_cost_nanos, Some(2_500_000));
    }

    #[tokio::test]
    async fn rate_limited_with_retry_after() {
        let fake = fake().await;
        for kind in KINDS {
            let f = run(&fake, kind, "m", vec![Step::status_retry_after(429, "3")])
                .await
                .unwrap_err();
            assert_eq!(f.kind, FailureKind::RateLimited, "{kind:?}: {f:?}");
            assert_eq!(f.status, Some(429), "{kind:?}");
            // Gemini states the wait in the body (RetryInfo), the others in the header.
            assert_eq!(f.retry_after, Some(Duration::from_secs(3)), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn server_errors() {
        let fake = fake().await;
        for kind in KINDS {
            let f = run(&fake, kind, "m", vec![Step::status(500)])
                .await
                .unwrap_err();
            assert_eq!(f.kind, FailureKind::Server, "{kind:?}: {f:?}");
            assert_eq!(f.status, Some(500), "{kind:?}");
            assert!(f.message.contains("HTTP 500"), "{kind:?}: {}", f.message);
        }
        let f = run(&fake, Kind::Anthropic, "m", vec![Step::status(529)])
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Server);
        assert!(f.message.contains("overloaded_error"), "{}", f.message);
    }

    #[tokio::test]
    async fn bad_json_is_malformed() {
        let fake = fake().await;
        for kind in KINDS {
            let f = run(&fake, kind, "m", vec![Step::BadJson])
                .await
                .unwrap_err();
            assert_eq!(f.kind, FailureKind::Malformed, "{kind:?}: {f:?}");
            assert_eq!(f.status, Some(200), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_wrong_key_is_auth_and_is_never_echoed() {
        let fake = fake().await;
        let wrong = "sk-wrong-key-0123456789";
        for kind in KINDS {
            let t = target(&fake, kind, wrong);
            let req = request("m", Duration::from_secs(5));
            let f = providers::call(&client(), &t, &req, &CancellationToken::new())
                .await
                .unwrap_err();
            assert_eq!(f.kind, FailureKind::Auth, "{kind:?}: {f:?}");
            assert!(!f.message.contains(wrong), "{kind:?}: {}", f.message);
        }
        // The fake echoes a wrong OpenAI key whole, so this shows the scrubbing.
        let t = target(&fake, Kind::Openai, wrong);
        let req = request("m", Duration::from_secs(5));
        let f = providers::call(&client(), &t, &req, &CancellationToken::new())
            .await
            .unwrap_err();
        assert!(
            f.message.contains("Incorrect API key provided: ***"),
            "{}",
            f.message
        );
        assert!(fake.requests().iter().all(|r| r.key_index.is_none()));
    }

    #[tokio::test]
    async fn a_hang_times_out_within_the_timeout() {
        let fake = fake().await;
        fake.script("slow", vec![Step::Hang]);
        let limit = Duration::from_millis(200);
        for kind in KINDS {
            let t = target(&fake, kind, DEFAULT_KEY);
            let started = Instant::now();
            let f = providers::call(
                &client(),
                &t,
                &request("slow", limit),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
            let took = started.elapsed();
            assert_eq!(f.kind, FailureKind::Timeout, "{kind:?}: {f:?}");
            assert!(
                took >= limit && took < limit + Duration::from_millis(400),
                "{kind:?}: took {took:?}"
            );
        }
    }

    #[tokio::test]
    async fn cancel_mid_call_drops_the_request() {
        let fake = fake().await;
        fake.script("slow", vec![Step::Hang]);
        for kind in KINDS {
            let t = target(&fake, kind, DEFAULT_KEY);
            let ct = CancellationToken::new();
            let canceller = ct.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                canceller.cancel();
            });
            let started = Instant::now();
            let f = providers::call(
                &client(),
                &t,
                &request("slow", Duration::from_secs(10)),
                &ct,
            )
            .await
            .unwrap_err();
            assert_eq!(f.kind, FailureKind::Cancelled, "{kind:?}: {f:?}");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{kind:?}: took {:?}",
                started.elapsed()
            );
        }
        // The fake sees each connection close: the request was dropped, not left running.
        let deadline = Instant::now() + Duration::from_secs(1);
        while fake.dropped_hangs() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fake.dropped_hangs(), 3);
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let fake = fake().await;
        let f = run(&fake, Kind::Anthropic, "m", vec![Step::status(307)])
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Malformed, "{f:?}");
        assert_eq!(f.status, Some(307));
    }

    #[tokio::test]
    async fn a_delayed_answer_within_the_timeout_arrives() {
        let fake = fake().await;
        let a = run(&fake, Kind::Gemini, "m", vec![Step::delay(50, "late")])
            .await
            .unwrap();
        assert_eq!(a.text, "late");
    }

    #[tokio::test]
    async fn a_refused_connection_is_connect() {
        // A port that was free a moment ago and has no listener now.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        for kind in KINDS {
            let t = Target {
                kind,
                base_url: Some(format!("http://127.0.0.1:{port}")),
                command: None,
                extra_args: vec![],
                secret: Some(Secret::new(DEFAULT_KEY)),
            };
            let f = providers::call(
                &client(),
                &t,
                &request("m", Duration::from_secs(5)),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
            assert_eq!(f.kind, FailureKind::Connect, "{kind:?}: {f:?}");
            assert!(!f.message.contains(DEFAULT_KEY));
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_malformed_and_names_the_limit() {
        let fake = fake().await;
        let huge = Step::Status {
            code: 200,
            body: Some(serde_json::Value::String("x".repeat(9 * 1024 * 1024))),
            retry_after: None,
        };
        let f = run(&fake, Kind::Openai, "big", vec![huge])
            .await
            .unwrap_err();
        assert_eq!(f.kind, FailureKind::Malformed, "{f:?}");
        assert!(f.message.contains("8 MiB"), "{}", f.message);
    }

    #[tokio::test]
    async fn the_fake_is_scriptable_over_http() {
        let fake = fake().await;
        let http = client();
        let script = serde_json::json!({
            "model": "m-http",
            "steps": [{"status": {"code": 503}}, {"answer": {"text": "second"}}],
        });
        let r = http
            .post(format!("{}/_fake/script", fake.url()))
            .json(&script)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let t = target(&fake, Kind::Anthropic, DEFAULT_KEY);
        let req = request("m-http", Duration::from_secs(5));
        let ct = CancellationToken::new();
        let first = providers::call(&http, &t, &req, &ct).await.unwrap_err();
        assert_eq!(first.kind, FailureKind::Server);
        let second = providers::call(&http, &t, &req, &ct).await.unwrap();
        assert_eq!(second.text, "second");
        let again = providers::call(&http, &t, &req, &ct).await.unwrap();
        assert_eq!(again.text, "second", "the last step repeats");

        let seen: serde_json::Value = http
            .get(format!("{}/_fake/requests", fake.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(seen.as_array().map(Vec::len), Some(3));
        assert_eq!(seen[0]["format"], "anthropic");
        assert_eq!(seen[0]["key_index"], 0);

        // A per-request step wins over the model's queue.
        let r = http
            .post(format!("{}/chat/completions", fake.openai_base()))
            .bearer_auth(DEFAULT_KEY)
            .header("x-fake-step", r#"{"status": {"code": 418}}"#)
            .json(&serde_json::json!({"model": "m-http", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 418);

        let r = http
            .post(format!("{}/_fake/reset", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(fake.requests().is_empty());
    }
}
