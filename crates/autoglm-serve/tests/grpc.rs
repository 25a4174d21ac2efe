//! The gRPC service on the same port as HTTP.

mod common;

use autoglm_serve::grpc::proto::inference_client::InferenceClient;
use autoglm_serve::grpc::proto::{InferRequest, ListModelsRequest, ModelRef};
use common::{repo_root, spec, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_stream_load_and_unload_over_grpc() {
    let root = repo_root();
    let s = start(root.path(), &[spec("glm", "a")], |_| {}).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = InferenceClient::new(channel);
    let req = InferRequest {
        model: "glm".into(),
        prompt_ids: vec![5, 9, 2, 7, 11],
        max_tokens: 8,
        ignore_eos: true,
        ..InferRequest::default()
    };
    let whole = client.infer(req.clone()).await.unwrap().into_inner();
    assert_eq!(whole.tokens.len(), 8);
    assert_eq!(whole.finish_reason, "length");
    // Streamed: the same tokens (greedy), then a last message with the reason.
    let mut stream = client.infer_stream(req.clone()).await.unwrap().into_inner();
    let mut tokens = Vec::new();
    let mut reason = String::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        tokens.extend(chunk.tokens);
        if !chunk.finish_reason.is_empty() {
            reason = chunk.finish_reason;
        }
    }
    assert_eq!((tokens, reason.as_str()), (whole.tokens.clone(), "length"));
    // Errors map to gRPC codes.
    let bad = InferRequest {
        model: "nope".into(),
        ..req.clone()
    };
    assert_eq!(
        client.infer(bad).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    let empty = InferRequest {
        prompt_ids: vec![],
        prompt_text: String::new(),
        ..req.clone()
    };
    assert_eq!(
        client.infer(empty).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    // Unload, list, load.
    let r = ModelRef {
        name: "glm".into(),
        version: 1,
    };
    assert!(!client.unload(r.clone()).await.unwrap().into_inner().loaded);
    let list = client
        .list_models(ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.models.len(), 1);
    assert!(!list.models[0].loaded);
    assert_eq!(
        client.infer(req.clone()).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert!(client.load(r).await.unwrap().into_inner().loaded);
    assert_eq!(
        client.infer(req).await.unwrap().into_inner().tokens,
        whole.tokens
    );
    s.stop().await;
}
