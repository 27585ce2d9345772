// Prometheus text exposition format (version 0.0.4), written by hand: families with HELP and
// TYPE, samples with escaped label values. Pure; one writer per scrape.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailgate::api {

using MetricLabels = std::vector<std::pair<std::string_view, std::string_view>>;

class PrometheusWriter {
public:
  // Starts a family: "# HELP" and "# TYPE" lines. `type` is "counter" or "gauge". Samples of a
  // family must follow its family() call (the format wants them grouped).
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, const MetricLabels& labels, double value);
  void sample(std::string_view name, double value) { sample(name, {}, value); }

  // Appends what another writer produced (its families stay whole).
  void append(std::string_view text) { out_ += text; }

  [[nodiscard]] std::string take() { return std::move(out_); }

  // The content type Prometheus expects for this format.
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

private:
  std::string out_;
};

} // namespace mailgate::api
