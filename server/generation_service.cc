#include "server/generation_service.h"

#include "server/model_info_proto.h"

namespace kvserve {

GenerationService::GenerationService(Engine* engine, const Tokenizer* tokenizer,
                                     ServingMetrics* metrics,
                                     std::chrono::steady_clock::duration max_request_time)
    : model_info_(ToProtoModelInfo(engine->model_info())) {
  const ModelInfo& info = engine->model_info();
  backend_ = {
      engine,    tokenizer, {info.vocab_size, info.context_length, info.max_new_tokens_limit},
      &streams_, metrics,   max_request_time};
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationService::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  return new GenerateReactor(backend_, context, request);
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (backend_.tokenizer == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "this server has no tokenizer (start it with --tokenizer)"));
    return reactor;
  }
  const bool add_bos = request->has_add_bos() ? request->add_bos() : true;
  for (int32_t id : backend_.tokenizer->Encode(request->text(), add_bos)) {
    response->add_token_ids(id);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* context,
                                                          const v1::GetModelInfoRequest*,
                                                          v1::ModelInfo* response) {
  *response = model_info_;
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace kvserve
