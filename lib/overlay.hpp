// P2V overlays: declarative TOML files ("Overlay v1", doc/formats.md) that say
// when they apply to a guest tree (os-release, files, packages) and what they
// change (file edits, fstab, systemd units, ssh keys, initramfs modules,
// bootloader, guest commands). They are data: nothing here runs guest code.
// Every file operation resolves paths inside the guest root (openat2 with
// RESOLVE_IN_ROOT), so a guest symlink can never lead outside the tree.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fsutil.hpp"
#include "result.hpp"

namespace planb {

struct OverlayCondition {
  std::vector<std::string> os_id;       // any of these equals ID or one of ID_LIKE
  std::vector<std::string> version_id;  // any glob matches VERSION_ID
  std::vector<std::string> files;       // all exist (paths inside the guest)
  std::vector<std::string> not_files;   // none exists
  std::vector<std::string> packages;    // all installed (dpkg status)
};

struct OverlayAction {
  std::string type;
  std::string path;                 // the file acted on (most types)
  std::vector<std::string> paths;   // delete
  std::string content;              // write_file
  uint32_t mode = 0644;             // write_file
  bool if_missing = false;          // write_file: keep an existing file
  std::string match, replace;       // replace_lines / delete_lines (ECMAScript regex)
  std::vector<std::string> lines;   // append_lines
  std::string key, value, separator = "=";  // set_key
  std::string user = "root", key_text;      // authorized_key
  std::string root_device;          // fstab (default UUID=${root_uuid})
  std::string absent = "comment";   // fstab: "comment" or "nofail" for other disks
  std::string unit;                 // enable_unit / disable_unit
  std::string command;              // guest_command
  std::vector<std::string> modules; // initramfs_modules
  std::string kind;                 // bootloader: "grub-bios"
  std::vector<std::string> cmdline; // bootloader / kernel_cmdline
};

struct Overlay {
  std::string name, description, file;
  int priority = 50;  // applied in ascending priority, then name
  bool enabled = true;
  OverlayCondition when;
  std::vector<OverlayAction> actions;
};

// Parses one overlay file's text; any error (syntax, unknown key or action,
// bad regex, missing field) is exit code 2 naming the file.
Result<Overlay> parse_overlay(std::string_view text, const std::string& file);
// Loads *.toml from each directory (missing directories are skipped). An
// overlay in a later directory replaces one of the same name in an earlier one
// (so a customer can override or disable a built-in one). Sorted for applying.
Result<std::vector<Overlay>> load_overlays(const std::vector<std::string>& dirs);

// A guest tree, every path resolved inside its root.
class GuestTree {
 public:
  static Result<GuestTree> open(const std::string& root);
  const std::string& root() const { return root_; }
  bool exists(const std::string& path) const;      // follows symlinks inside the root
  bool is_dir(const std::string& path) const;
  Result<std::optional<std::string>> read(const std::string& path) const;
  // Replaces the content (keeps owner and mode of an existing file, else
  // creates it with mode and root:root), creating missing parent directories.
  Status write(const std::string& path, std::string_view data, uint32_t mode = 0644);
  Status mkdirs(const std::string& path, uint32_t mode = 0755);
  Status chown(const std::string& path, uint32_t uid, uint32_t gid);
  Status chmod(const std::string& path, uint32_t mode);
  // Removes a file, symlink or whole directory tree; false if it was absent.
  Result<bool> remove(const std::string& path);
  Status symlink(const std::string& target, const std::string& path);  // replaces
  Result<std::optional<std::string>> readlink(const std::string& path) const;
  Result<std::vector<std::string>> list(const std::string& dir) const;  // names, sorted

 private:
  Result<Fd> open_parent(const std::string& path, std::string& leaf, bool create) const;
  std::string root_;
  std::shared_ptr<Fd> fd_;
};

struct GuestFacts {
  std::string id, version_id, pretty_name;
  std::vector<std::string> id_like;
  std::set<std::string> packages;  // installed dpkg packages
};
Result<GuestFacts> read_guest_facts(const GuestTree& tree);

// Why an overlay does or does not apply ("" reason when it matches).
struct MatchResult {
  bool matched = false;
  std::string reason;
};
MatchResult match_overlay(const Overlay& o, const GuestFacts& facts, const GuestTree& tree);

// What an action changed, for --explain.
struct Change {
  std::string overlay, action, file, before, after;
};

// What overlays ask of the image build beyond file edits.
struct BootPlan {
  std::string bootloader;                 // "" (none asked), "grub-bios"
  std::vector<std::string> cmdline;       // kernel arguments (root= is added by convert)
  std::vector<std::string> initramfs_modules;
  std::vector<std::pair<std::string, std::string>> guest_commands;  // (overlay, command)
};

// ${name} in action strings is replaced from vars; an unknown name is an error.
Status apply_overlay(const Overlay& o, GuestTree& tree, const std::map<std::string, std::string>& vars,
                     BootPlan& plan, std::vector<Change>& changes);

// Debian-style version sort ("6.1.0-10" < "6.1.0-9" is false).
bool version_less(const std::string& a, const std::string& b);

}  // namespace planb
