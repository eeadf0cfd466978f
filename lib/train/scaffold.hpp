// n3/train/scaffold.hpp — SCAFFOLD's control variates on the member's side, without libtorch:
// the server's c inside a model record, and the member's own c_i in its state file.
//
//   Model m = with_zero_control(init);                 // round 0: c = 0 in the model record
//   auto c = control_tensors(m);                       // the server's c (spec order), or empty
//   auto ci = read_member_state("me.scaffold", m);     // nullopt on first use (c_i = 0)
//   write_member_state("me.scaffold", new_ci, m);      // atomically (temp file, fsync, rename)
//
// The server control variate of model tensor NAME is the record's tensor "scaffold/NAME"
// (meta::control_prefix; man/n3-record.5). The member's state file is a plain safetensors file:
// one F32 tensor per model tensor, under the model tensor's name, and metadata n3_state =
// "scaffold-member" and spec_hash (the model spec it belongs to).
//
// Failures: DataError when a record's control tensors do not match its model tensors one to
// one, or a state file is not a SCAFFOLD member state, belongs to another spec, or misses or
// misshapes a tensor; EnvError when a file cannot be read or written.
#pragma once

#include "train/model.hpp"

#include <optional>
#include <string>
#include <vector>

namespace n3::train {

Model with_zero_control(const Model& m);
std::vector<NamedTensor> control_tensors(const Model& m);
std::optional<std::vector<NamedTensor>> read_member_state(const std::string& path, const Model& m);
void write_member_state(const std::string& path, const std::vector<NamedTensor>& ci,
                        const Model& m);

} // namespace n3::train
