#include "tokenizer/normalizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace kvserve {

absl::StatusOr<Normalizer> Normalizer::FromJson(const nlohmann::json& normalizer,
                                                const std::string& file) {
  Normalizer result;
  if (absl::Status status = result.AddSteps(normalizer, file); !status.ok()) return status;
  return result;
}

absl::Status Normalizer::AddSteps(const nlohmann::json& normalizer, const std::string& file) {
  if (normalizer.is_null()) return absl::OkStatus();
  const std::string type = normalizer.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const nlohmann::json& step : normalizer.at("normalizers")) {
      if (absl::Status status = AddSteps(step, file); !status.ok()) return status;
    }
    return absl::OkStatus();
  }
  if (type == "Prepend") {
    steps_.push_back({true, "", normalizer.at("prepend").get<std::string>()});
    return absl::OkStatus();
  }
  if (type == "Replace" && normalizer.at("pattern").contains("String")) {
    steps_.push_back({false, normalizer["pattern"]["String"].get<std::string>(),
                      normalizer.at("content").get<std::string>()});
    return absl::OkStatus();
  }
  if (type == "NFC") return absl::OkStatus();  // see the header: approximated as the identity
  return absl::UnimplementedError(
      absl::StrCat(file, ": normalizer ", normalizer.dump(), " is not supported"));
}

std::string Normalizer::Normalize(std::string_view text) const {
  std::string out(text);
  for (const Step& step : steps_) {
    if (step.prepend) {
      if (!out.empty()) out = step.to + out;  // `tokenizers` leaves empty text empty
    } else if (!step.from.empty()) {
      out = absl::StrReplaceAll(out, {{step.from, step.to}});
    }
  }
  return out;
}

}  // namespace kvserve
