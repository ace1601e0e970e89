//! The fake as kube-rs sees it: CRUD, every patch type, status subresources, finalizers,
//! watches through `kube::runtime::watcher`, and a CRD whose custom resources get served.

use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::{conditions, wait::await_condition, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

async fn client(server: &FakeApiServer) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    Client::try_from(config).unwrap()
}

fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"app": name}}, "data": data}),
    )
    .unwrap()
}

#[tokio::test]
async fn crud_and_patches() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&server).await);
    let pp = PostParams::default();

    let created = api
        .create(&pp, &cm("one", json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some() && created.creation_timestamp().is_some());
    assert_eq!(
        code(api.create(&pp, &cm("one", json!({}))).await.unwrap_err()),
        409
    );
    let missing = api.get("nope").await.unwrap_err();
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.reason == "NotFound" && s.message == r#"configmaps "nope" not found"#)
    );
    api.create(&pp, &cm("two", json!({}))).await.unwrap();
    let listed = api
        .list(&ListParams::default().labels("app in (one, three)"))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["one"]
    );
    assert!(listed.metadata.resource_version.is_some());
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=two"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);

    let merged = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2", "a": null}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap().into_iter().collect::<Vec<_>>(),
        [("b".to_string(), "2".to_string())]
    );
    let rv = merged.metadata.resource_version.clone();
    let same = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, rv,
        "a no-op patch must not bump resourceVersion"
    );

    // The json-patch crate's type, named through inference.
    let json_patch = |ops| Patch::<()>::Json(serde_json::from_value(ops).unwrap());
    let ops = json!([{"op": "test", "path": "/data/b", "value": "2"}, {"op": "add", "path": "/data/c", "value": "3"}]);
    let patched = api
        .patch("one", &PatchParams::default(), &json_patch(ops))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap().len(), 2);
    let failing = json_patch(json!([{"op": "test", "path": "/data/b", "value": "x"}]));
    assert_eq!(
        code(
            api.patch("one", &PatchParams::default(), &failing)
                .await
                .unwrap_err()
        ),
        422
    );

    let apply = PatchParams::apply("tests");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "three"}, "data": {"x": "1"}});
    let applied = api
        .patch("three", &apply, &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(applied.metadata.generation, Some(1));
    let again = api
        .patch("three", &apply, &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        applied.metadata.resource_version
    );
    let no_manager = api
        .patch("three", &PatchParams::default(), &Patch::Apply(&body))
        .await
        .unwrap_err();
    assert_eq!(code(no_manager), 400);

    let mut stale = applied.clone();
    stale.data = Some([("y".to_string(), "2".to_string())].into());
    let replaced = api.replace("three", &pp, &stale).await.unwrap();
    assert_eq!(replaced.metadata.uid, applied.metadata.uid);
    assert_eq!(
        code(api.replace("three", &pp, &stale).await.unwrap_err()),
        409
    );

    api.delete("two", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("two").await.unwrap_err()), 404);
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    assert_eq!(
        api.create(&dry, &cm("dry", json!({})))
            .await
            .unwrap()
            .name_any(),
        "dry"
    );
    assert!(
        api.get_opt("dry").await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    let swept = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("!app"),
        )
        .await
        .unwrap();
    assert_eq!(swept.left().unwrap().items.len(), 1);
    assert!(api.get_opt("three").await.unwrap().is_none());
    let elsewhere: Api<ConfigMap> = Api::namespaced(api.clone().into_client(), "absent");
    assert_eq!(
        code(
            elsewhere
                .create(&pp, &cm("x", json!({})))
                .await
                .unwrap_err()
        ),
        404
    );

    let stats = server.stats();
    assert_eq!(stats.count("configmaps", "create"), 5);
    assert_eq!(stats.count("configmaps", "patch"), 7);
    assert_eq!(stats.verb("delete"), 1);
}

#[tokio::test]
async fn status_subresource_and_finalizers() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Running"}});
    let created = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        created.status.unwrap().phase.as_deref(),
        Some("Pending"),
        "create ignores status"
    );
    let running = pods
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(running.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(
        running.metadata.generation,
        Some(1),
        "status changes keep the generation"
    );
    let main = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"},
        "spec": {"activeDeadlineSeconds": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.unwrap().phase.as_deref(),
        Some("Running"),
        "the main endpoint ignores status"
    );
    assert_eq!(main.metadata.generation, Some(2));
    let from_helper = server
        .patch_status("v1", "Pod", "default", "p", json!({"phase": "Succeeded"}))
        .unwrap();
    assert_eq!(from_helper["status"]["phase"], "Succeeded");

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let marked = cms
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    let again = cms
        .delete("held", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        marked.metadata.resource_version
    );
    assert!(cms.get("held").await.is_ok());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(cms.get("held").await.unwrap_err()), 404);

    let namespaces: Api<Namespace> = Api::all(client);
    let ns = serde_json::from_value(json!({"metadata": {"name": "scratch"}})).unwrap();
    let ns = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
}

#[tokio::test]
async fn watches_see_changes_in_order() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();

    let events = watcher(api.clone(), watcher::Config::default().labels("app=w")).boxed();
    let streaming = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let raw = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    let collect = tokio::spawn(events.take(5).try_collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(200)).await;

    api.create(&PostParams::default(), &cm("w", json!({"v": "1"})))
        .await
        .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();

    let seen: Vec<String> = tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|e| match e {
            watcher::Event::Init => "init".into(),
            watcher::Event::InitApply(o) => format!("initapply {}", o.name_any()),
            watcher::Event::InitDone => "initdone".into(),
            watcher::Event::Apply(o) => format!("apply {}", o.data.unwrap()["v"]),
            watcher::Event::Delete(o) => format!("delete {}", o.name_any()),
        })
        .collect();
    assert_eq!(seen, ["init", "initdone", "apply 1", "apply 2", "delete w"]);

    let initial: Vec<_> = streaming.take(3).try_collect().await.unwrap();
    assert!(
        matches!(&initial[1], watcher::Event::InitApply(o) if o.name_any() == "before"),
        "{initial:?}"
    );
    assert!(matches!(initial[2], watcher::Event::InitDone));

    let kinds: Vec<&str> = raw
        .take(4)
        .map(|e| match e.unwrap() {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "OTHER",
        })
        .collect()
        .await;
    assert_eq!(kinds, ["ADDED", "ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(server.stats().count("configmaps", "watch"), 3);
}

#[tokio::test]
async fn custom_resources_from_a_crd() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
    crds.patch(
        "widgets.example.com",
        &PatchParams::apply("tests"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = await_condition(
        crds.clone(),
        "widgets.example.com",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(5), established)
        .await
        .unwrap()
        .unwrap();

    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (ar, caps) = discovery.resolve_gvk(&gvk).expect("discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status")
    );

    let widgets: Api<DynamicObject> =
        Api::default_namespaced_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let widget: DynamicObject =
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}}))
        .unwrap();
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    let status = widgets
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["ready"], true);
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(server.list("example.com/v1", "Widget", None).len(), 1);

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(code(widgets.get("w1").await.unwrap_err()), 404);
}

#[tokio::test]
async fn controller_with_a_finalizer() {
    let server = FakeApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&server).await);
    let (tx, mut seen) = mpsc::unbounded_channel::<String>();
    let reconciled = api.clone();
    let reconcile = move |cm: Arc<ConfigMap>, tx: Arc<mpsc::UnboundedSender<String>>| {
        let api = reconciled.clone();
        async move {
            finalizer(&api, "example.com/cleanup", cm, |event| async move {
                let _ = tx.send(match event {
                    finalizer::Event::Apply(cm) => format!("apply {}", cm.name_any()),
                    finalizer::Event::Cleanup(cm) => format!("cleanup {}", cm.name_any()),
                });
                Ok::<_, kube::Error>(Action::await_change())
            })
            .await
        }
    };
    let retry = |_: Arc<ConfigMap>, _: &finalizer::Error<kube::Error>, _: Arc<_>| {
        Action::requeue(Duration::from_millis(100))
    };
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, retry, Arc::new(tx))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    let next = async |seen: &mut mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .unwrap()
            .unwrap()
    };
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    assert_eq!(next(&mut seen).await, "apply c");
    let held = api.get("c").await.unwrap();
    assert_eq!(held.finalizers(), ["example.com/cleanup"]);
    api.delete("c", &DeleteParams::default()).await.unwrap();
    assert_eq!(next(&mut seen).await, "cleanup c");
    for _ in 0..100 {
        if api.get_opt("c").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        api.get_opt("c").await.unwrap().is_none(),
        "the finalizer was never removed"
    );
    controller.abort();
}

#[tokio::test]
async fn expired_watches_get_410() {
    let server = FakeApiServer::builder().history(3).start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(client(&server).await);
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut raw = api
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match raw.next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 event, got {other:?}"),
    }
    assert!(
        raw.next().await.is_none(),
        "the stream ends after the error"
    );
    let (quick, now) = (
        WatchParams::default().timeout(1),
        server.resource_version().to_string(),
    );
    let recent = api.watch(&quick, &now).await.unwrap();
    assert_eq!(
        recent.count().await,
        0,
        "nothing newer: the watch times out empty"
    );
}
