"""Predict: how good is the trained model, and what does it say about your images?"""

import streamlit as st

from ui import predict_view, state

state.ensure_started_from_app()

st.title("Predict")
jobs = predict_view.usable_jobs()
if not jobs:
    st.info("Train a model first (Train page). A run you stopped counts too: its weights so far are kept.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/monitoring:")
else:
    job = predict_view.pick_job(jobs)
    st.subheader("Test set")
    predict_view.draw_test_metrics(job)
    st.subheader("Try it on an image")
    upload_tab, camera_tab, test_tab = st.tabs(["Upload", "Webcam", "A test image"])
    with upload_tab:
        upload = st.file_uploader(
            "A photo or drawing (PNG, JPEG, BMP, GIF, WebP)", type=["png", "jpg", "jpeg", "bmp", "gif", "webp"], key="predict_upload"
        )
        if upload is not None:
            predict_view.predict_upload(job, upload.getvalue(), upload.name, key="upload")
    with camera_tab:
        if st.toggle("Turn the webcam on", key="predict_camera_on"):
            photo = st.camera_input("Take a photo", key="predict_camera")
            if photo is not None:
                predict_view.predict_upload(job, photo.getvalue(), "webcam photo", key="camera")
    with test_tab:
        predict_view.draw_test_image(job)
