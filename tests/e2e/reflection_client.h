// The services a server lists through reflection (grpc.reflection.v1alpha), for end-to-end tests.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace kvserve::testing {

// The names listed, or an empty set when the call fails (10 s deadline).
inline std::set<std::string> ReflectedServices(std::shared_ptr<grpc::Channel> channel) {
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(std::move(channel));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  std::set<std::string> services;
  if (!stream->Write(request)) return services;
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  while (stream->Read(&response)) {
    for (const auto& s : response.list_services_response().service()) services.insert(s.name());
  }
  return stream->Finish().ok() ? services : std::set<std::string>();
}

}  // namespace kvserve::testing
