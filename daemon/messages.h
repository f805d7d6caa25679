/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* MESSAGE_IDs of coherencyd's journal records; systemd/coherencyd.catalog explains each. */
/* One id per decision, so an operator can select refusals by id. */
#define COH_MESSAGE_DECISION        "56ea55cacbf54bfaabb686c19008136e" /* granted */
#define COH_MESSAGE_NOT_NEEDED      "bab301a5d09446a69a069bd75de15ec6"
#define COH_MESSAGE_REFUSED         "8a2fa1eb57f147e6884355e57189c6d3"
#define COH_MESSAGE_REFUSED_FOLDED  "9d5a6eea0174432681bdb0777a2e9c5c" /* "N more refused for uid U" */
#define COH_MESSAGE_GRANT_HELD      "a5dfa02b1f644ef7a2e36f5238dc98b3" /* still held past ReleaseTimeoutSec= */
#define COH_MESSAGE_GRANT_END       "a31aadc285ac474dad65dd69506a7eb8"
#define COH_MESSAGE_POLICY_LOADED   "95a6494f9b424cbfa5febfbd7573915a"
#define COH_MESSAGE_POLICY_FAILED   "ca929c184e2d4b0da2958be50034b49a"
#define COH_MESSAGE_STARTED         "b2c9bd048f534253b2dafb5599df0afc"
#define COH_MESSAGE_STOPPED         "2666b193175c4ed8b102b6cb052f5e6a"
#define COH_MESSAGE_REQUEST_ERROR   "1b85ad80f7e84fb5b5b0e8c23b60ee8c"
#define COH_MESSAGE_OPERATOR        "ed8dc531479140998600bbe960890e72" /* a Manager call that changes something */
#define COH_MESSAGE_JOURNAL_DROPPED "ef104fe735354deb83278cc18d205175"
