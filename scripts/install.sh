#!/usr/bin/env bash
# Installs wsurgery under PREFIX (default /usr/local): the release binary, its man page (generated from the
# same help text by swift-argument-parser's generate-manual plugin) and completions for bash, zsh and fish.
#   scripts/install.sh [PREFIX]
set -euo pipefail
prefix="${1:-/usr/local}"
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product wsurgery
swift package plugin generate-manual >/dev/null
bin=.build/release/wsurgery
install -d "$prefix/bin" "$prefix/share/man/man1" "$prefix/share/bash-completion/completions" \
  "$prefix/share/zsh/site-functions" "$prefix/share/fish/vendor_completions.d"
install -m 755 "$bin" "$prefix/bin/wsurgery"
# The generator keeps the help's blank lines, which mdoc warns about ("Empty input line"): a paragraph break.
sed 's/^$/.Pp/' .build/plugins/GenerateManual/outputs/wsurgery/wsurgery.1 > "$prefix/share/man/man1/wsurgery.1"
chmod 644 "$prefix/share/man/man1/wsurgery.1"
"$bin" --generate-completion-script bash > "$prefix/share/bash-completion/completions/wsurgery"
"$bin" --generate-completion-script zsh > "$prefix/share/zsh/site-functions/_wsurgery"
"$bin" --generate-completion-script fish > "$prefix/share/fish/vendor_completions.d/wsurgery.fish"
echo "installed $prefix/bin/wsurgery, its man page (man wsurgery) and bash, zsh and fish completions"
